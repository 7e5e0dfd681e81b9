"""``FakeUpstream`` as a process of its own, so a test can SIGKILL it as a worker dies.

    python -m tests.reliability.fake_worker --port 8601 --delay 0.05 --token-delay 0.01

A real vLLM worker cannot stand in here: on this machine it takes minutes to start, and a
second one cannot run beside the shared worker on two cores. The fake answers chat calls after
``--delay`` seconds (the first byte), streams ``TOKENS`` tokens ``--token-delay`` apart, and
serves ``/health`` and ``/v1/models`` as vLLM does.
"""

from __future__ import annotations

import argparse
import asyncio

from tests.reliability.fake_upstream import FakeUpstream


async def serve(port: int, delay_s: float, token_delay_s: float) -> None:
    upstream = FakeUpstream(mode="slow", delay_s=delay_s, token_delay_s=token_delay_s)
    server = await asyncio.start_server(upstream._serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a fake OpenAI worker process")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds to the first byte")
    parser.add_argument("--token-delay", type=float, default=0.01, help="seconds between tokens")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.delay, args.token_delay))


if __name__ == "__main__":
    main()
