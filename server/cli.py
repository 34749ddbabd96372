"""Command line: `pod-identity-dns serve` and `pod-identity-dns export-zone`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import __version__
from .config import Config, ConfigError, add_arguments, build_config, config_warnings
from .errors import SourceError
from .ops.logsetup import setup_logging
from .options import Option, add_options, check_value, seconds
from .serve.signals import EarlySignals

log = logging.getLogger("pod_identity_dns")

# Exit codes (README, "Exit codes"): 0 stopped cleanly on SIGTERM/SIGINT; 1 failed while running
# (a source stopped for good, a worker died, an unexpected error); 2 could not start (bad configuration,
# an unreadable file or kubeconfig, an address that cannot be bound).
EXIT_FAILED = 1
EXIT_CONFIG = 2

# export-zone's own flags, declared as the shared ones are (not config-file keys).
EXPORT_OPTIONS = (
    Option("output_dir", "--output-dir", None, "write one <zone>.zone file per zone here instead of stdout"),
    Option("sync_timeout", "--sync-timeout", 30.0, "how long to wait for the cluster list, seconds", seconds, low=0.1, high=86400),
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pod-identity-dns",
        description="Authoritative DNS for Kubernetes pod identities: one stable name per pod, one PTR per pod IP.",
    )
    parser.add_argument("--version", action="version", version=f"pod-identity-dns {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="answer DNS queries")
    add_arguments(serve)
    export = commands.add_parser("export-zone", help="print the served zones as RFC 1035 zone-file text")
    add_arguments(export, serve=False)
    add_options(export, EXPORT_OPTIONS)
    return parser


def _run(coro) -> int:
    """Run on uvloop, the server's event loop."""
    import uvloop

    return uvloop.run(coro)


def _serve_now(config: Config, early: EarlySignals | None = None) -> int:
    """Bind every listener, start decoding the pod file (in a child), then run the server."""
    from .serve.listeners import BindError, bind_all, raise_fd_limit
    from .sources.podfile import start_pod_file

    early = early or EarlySignals().install()
    try:
        sockets = bind_all(config.listen, config.metrics_listen, reuse_port=config.workers > 1)
    except BindError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    raise_fd_limit(config.tcp_max_connections + (config.metrics_max_connections if config.metrics_listen else 0))
    try:
        first_pods = start_pod_file(config.pods_file, config.pods_file_memory_limit) if config.pods_file else None
    except BaseException:
        sockets.close()
        raise
    return _run(_serve(config, first_pods, sockets, early))


async def _serve(config: Config, first_pods=None, sockets=None, early: EarlySignals | None = None) -> int:
    from .app import App
    from .serve.listeners import BindError

    observer = None
    if config.metrics_listen is not None:
        from .ops.metrics import Observer

        observer = Observer()
    app = App(config, observer, first_pods, sockets, early)
    try:
        await app.run()
    except SourceError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_CONFIG
    except BindError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    return app.exit_code


async def _export(config: Config, output_dir: str | None, sync_timeout: float) -> int:
    import asyncio

    from .app import App
    from .zone.zonefile import zone_file_name, zone_text

    app = App(config, transfers=False)
    try:
        await app.start_sources()
    except SourceError as exc:
        log.error("cannot read: %s", exc)
        return EXIT_CONFIG
    try:
        if not await app.wait_synced(sync_timeout):
            log.error("the pod source did not sync within %.0f s", sync_timeout)
            return EXIT_FAILED
        texts = [(zone, zone_text(app.store, zone)) for zone in app.store.zones.values()]
    finally:
        for task in app._tasks:
            task.cancel()
        # Let the watch close its API connection before the loop ends.
        await asyncio.gather(*app._tasks, return_exceptions=True)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        for zone, text in texts:
            with open(os.path.join(output_dir, zone_file_name(zone)), "w", encoding="utf-8") as handle:
                handle.write(text)
    else:
        sys.stdout.write("\n".join(text for _, text in texts))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        config = build_config(args)
        if args.command == "export-zone":
            output_dir, sync_timeout = (check_value(o, getattr(args, o.key) or o.default) for o in EXPORT_OPTIONS)
    except ConfigError as exc:
        print(f"pod-identity-dns: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "serve" and config.transfers_configured:
        from .app import transfer_settings
        from .transfer import TransferSetupError, check_settings

        try:
            check_settings(transfer_settings(config))  # before anything is bound: a bad key file costs no listener
        except TransferSetupError as exc:
            print(f"pod-identity-dns: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    setup_logging(config.log_format, config.log_level)
    if args.command == "serve":
        for warning in config_warnings(config):
            log.warning("%s", warning)
        if config.workers > 1:
            from .serve.workers import run_workers

            return run_workers(config, _serve_now)
        return _serve_now(config)
    return _run(_export(config, output_dir, sync_timeout))
