"""The ``ttc`` command line (typer): serve, worker, models prepare; more commands join here."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from core.errors import TtcError
from ttc.bench import register as register_bench
from ttc.router import router_app
from ttc.serve_output import FORMAT, ServeOutput, announce_ready, base_url, probe_url
from workers.startup import output_log

app = typer.Typer(
    help="ttc-gateway: adaptive test-time compute behind an OpenAI API.", no_args_is_help=True
)
models_app = typer.Typer(help="Bundled models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(router_app, name="router")  # `ttc router train`
register_bench(app)  # `ttc eval`, `ttc bench overhead`
err = Console(stderr=True)

if TYPE_CHECKING:
    from server.config import Settings

DEFAULT_CONFIG = Path("config/default.yaml")

# Loud at debug (httpcore wrote 81,050 lines in 10 minutes of load) and about their own
# plumbing: kept at warning unless ``server.log_levels`` names them.
QUIET_LOGGERS = (
    "httpx",
    "httpcore",
    "hpack",
    "aiohttp",
    "asyncio",
    "urllib3",
    "redis",
    "multipart",
    "watchfiles",
)


def configure_logging(
    level: str, levels: dict[str, str], handler: logging.Handler | None = None
) -> None:
    """Root at ``level``; third-party loggers at warning; ``levels`` (per logger) wins.
    ``handler`` (serve's terminal output) replaces the default stderr stream handler."""
    handlers = None if handler is None else [handler]
    logging.basicConfig(level=level.upper(), format=FORMAT, handlers=handlers)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, named in levels.items():
        logging.getLogger(name).setLevel(named.upper())


def _processes(value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise typer.BadParameter(f"{value!r}: a number of processes (1 or more) or auto")
    return int(value)


def _setup_logging(settings: Settings) -> None:
    configure_logging(settings.server.log_level, settings.server.log_levels)


@app.command()
def serve(
    config: Annotated[Path, typer.Option(help="YAML config file")] = DEFAULT_CONFIG,
    port: Annotated[int | None, typer.Option(help="port (overrides server.port)")] = None,
    host: Annotated[str | None, typer.Option(help="address (overrides server.host)")] = None,
    worker_logs: Annotated[
        bool, typer.Option(help="show launched workers' own output (else only in their log)")
    ] = False,
    processes: Annotated[
        str | None, typer.Option(help="gateway processes on the port, or auto (server.processes)")
    ] = None,
) -> None:
    """Run the gateway; launch and supervise the local workers the config asks for."""
    import uvicorn

    from server.app import create_app
    from server.config import ConfigError, load_settings
    from ttc import processes as group

    given = {"port": port, "host": host, "processes": _processes(processes)}
    overrides = {k: v for k, v in given.items() if v is not None}
    try:
        settings = load_settings(config)
        server = settings.server.model_copy(update=overrides)
        settings = settings.model_copy(update={"server": server})
        configure_logging(server.log_level, server.log_levels, ServeOutput(err))
        if worker_logs:
            output_log.setLevel(logging.DEBUG)  # else only in the worker's log file
        if (total := group.count(settings)) > 1:
            raise typer.Exit(group.run(config, overrides, total, _setup_logging))
        application = create_app(settings, config_path=config)
    except (ConfigError, ValueError) as exc:  # ValueError: e.g. a key_env variable not set
        err.print(f"[red]invalid config {config}: {exc}[/red]")
        raise typer.Exit(2) from exc
    announce_ready(
        err,
        base_url(server.host, server.port),
        probe_url(server.host, server.port),
        ["auto", *settings.tiers],
    )
    uvicorn.run(
        application,
        host=server.host,
        port=server.port,
        log_level=server.log_level,
        log_config=None,  # uvicorn's lines go through ServeOutput like every other line
        timeout_graceful_shutdown=30,
        access_log=False,
    )


@app.command()
def worker(
    model: Annotated[str, typer.Option(help="bundled model name or model folder")] = (
        "smollm2-135m"
    ),
    port: Annotated[int, typer.Option(help="port of the vLLM OpenAI server")] = 8100,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    served_name: Annotated[list[str] | None, typer.Option(help="extra served names")] = None,
    max_model_len: Annotated[int, typer.Option()] = 2048,
    profile: Annotated[
        str, typer.Option(help="model profile preset (workers.profiles): its parser flags")
    ] = "plain",
) -> None:
    """Run one vLLM worker in the foreground (prepares a bundled model first)."""
    from workers.config import LaunchConfig
    from workers.launcher import run_foreground
    from workers.profiles import PRESETS

    if profile not in PRESETS:
        err.print(f"[red]unknown profile {profile!r}; presets: {', '.join(PRESETS)}[/red]")
        raise typer.Exit(2)

    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s %(message)s")
    launch = LaunchConfig(
        model=model,
        port=port,
        host=host,
        served_names=tuple(served_name or ()),
        max_model_len=max_model_len,
    )
    try:
        code = run_foreground(launch, PRESETS[profile])
    except TtcError as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(2) from exc
    raise typer.Exit(code)


@models_app.command("prepare")
def models_prepare(
    name: Annotated[str, typer.Argument(help="bundled model, e.g. smollm2-135m")],
    force: Annotated[bool, typer.Option(help="rebuild even if prepared")] = False,
) -> None:
    """Convert a bundled model into a Hugging Face folder in the cache (idempotent)."""
    from workers.models import prepare

    try:
        with err.status(f"preparing {name}"):
            path = prepare(name, force=force)
    except TtcError as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(2) from exc
    sys.stdout.write(f"{path}\n")


if __name__ == "__main__":
    app()
