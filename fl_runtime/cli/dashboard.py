"""``fl dashboard``: the live web dashboard, or (``--mode offline``) the static report."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fl_runtime.cli._common import config_option, friendly_errors, load
from fl_runtime.cli.report import DEFAULT_OUT, render_offline, resolve_log
from fl_runtime.config import Config


@click.command(name="dashboard")
@click.option(
    "--mode",
    type=click.Choice(["live", "offline"]),
    default="live",
    show_default=True,
    help="live: serve the web dashboard; offline: write the HTML report and exit.",
)
@config_option
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Aggregation log (default: the config's AGGREGATION_LOG); may not exist yet.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind. Anything but loopback requires --auth-file.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8050, show_default=True)
@click.option(
    "--auth-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="File of 'user:hash' lines (see --hash-password); enables the login.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="PEM certificate: serve HTTPS (with --tls-key).",
)
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--kafka/--no-kafka",
    default=True,
    show_default=True,
    help="Watch Kafka (health, bridges, dead letters, the anomalies topic) at "
    "KAFKA_BOOTSTRAP_SERVERS.",
)
@click.option(
    "--history",
    type=click.IntRange(10, 1_000_000),
    default=5000,
    show_default=True,
    help="Newest rounds kept in memory for the API and charts.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUT,
    show_default=True,
    help="Offline mode: directory for the report.",
)
@click.option(
    "--hash-password",
    is_flag=True,
    help="Read a password (prompt or stdin), print a hash for --auth-file, exit.",
)
@friendly_errors
def command(
    mode: str,
    config_path: str | None,
    log_path: Path | None,
    host: str,
    port: int,
    auth_file: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    kafka: bool,
    history: int,
    out: Path,
    hash_password: bool,
) -> None:
    """Show training progress, node statistics and system health in a browser."""
    if hash_password:
        _print_hash()
        return
    if mode == "offline":
        render_offline(resolve_log(config_path, log_path), out, "fedge federated training report")
        return
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    cfg = load(config_path)
    _serve(
        cfg,
        log_path or Path(cfg.aggregation.log_path),
        host,
        port,
        auth_file,
        tls_cert,
        tls_key,
        kafka,
        history,
    )


def _print_hash() -> None:
    from fl_runtime.dashboard.auth import hash_password

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise click.UsageError("empty password")
    click.echo(hash_password(password))


def _serve(
    cfg: Config,
    log: Path,
    host: str,
    port: int,
    auth_file: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    kafka: bool,
    history: int,
) -> None:
    from fl_runtime.dashboard import (
        AnomalySource,
        Authenticator,
        ConfluentKafkaSource,
        DashboardSettings,
        KafkaAnomalySource,
        KafkaSource,
        MemoryAnomalySource,
        StaticKafkaSource,
        create_app,
        is_loopback,
        load_credentials,
        make_server,
    )
    from fl_runtime.service.common import kafka_consumer_conf, setup_logging

    if auth_file is None and not is_loopback(host):
        raise click.UsageError(
            f"--host {host} is not a loopback address: the dashboard then "
            "requires a login; pass --auth-file (see --hash-password)"
        )
    authenticator = Authenticator(load_credentials(auth_file)) if auth_file else None
    if authenticator and tls_cert is None and not is_loopback(host):
        click.echo(
            "warning: without --tls-cert, passwords cross the network in clear text", err=True
        )
    source: KafkaSource = StaticKafkaSource()
    anomalies: AnomalySource = MemoryAnomalySource(status="disabled")
    if kafka:
        anomalies = KafkaAnomalySource(
            kafka_consumer_conf(cfg, "fl-dashboard-anomalies"), cfg.kafka.anomalies_topic
        )
        source = ConfluentKafkaSource(
            bootstrap_servers=cfg.kafka.bootstrap_servers,
            dead_letter_topic=cfg.kafka.dead_letter_topic,
            sensor_topic_prefix=cfg.kafka.sensor_topic_prefix,
            security_protocol=cfg.kafka.security_protocol,
        )
    settings = DashboardSettings(
        log_path=log,
        max_weight_age_s=cfg.aggregation.max_weight_age_seconds,
        aggregation_interval_s=cfg.aggregation.interval_seconds,
        sensor_topic_prefix=cfg.kafka.sensor_topic_prefix,
        history=history,
    )
    setup_logging(cfg, "dashboard")
    app = create_app(settings, source, anomalies=anomalies, authenticator=authenticator)
    scheme = "https" if tls_cert else "http"
    click.echo(
        f"fedge dashboard on {scheme}://{host}:{port}/ reading {log}"
        + (" (login required)" if authenticator else "")
    )
    make_server(
        app,
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        log_level=cfg.service.log_level,
    ).run()
