"""The dashboard's and the report's public names, and a light import for the shared stats."""

import subprocess
import sys

import fl_runtime.dashboard
import fl_runtime.report


def test_dashboard_public_api_is_pinned() -> None:
    assert sorted(fl_runtime.dashboard.__all__) == [
        "AnomalyBook",
        "AnomalySource",
        "Authenticator",
        "ConfluentKafkaSource",
        "DashboardSettings",
        "KafkaAnomalySource",
        "KafkaSnapshot",
        "KafkaSource",
        "MemoryAnomalySource",
        "StaticKafkaSource",
        "create_app",
        "hash_password",
        "is_loopback",
        "load_credentials",
        "make_server",
        "serve_in_thread",
    ]


def test_report_public_api_is_pinned() -> None:
    assert sorted(fl_runtime.report.__all__) == ["Report", "ReportError", "render_report"]


def test_importing_the_report_stats_does_not_import_matplotlib() -> None:
    code = "import sys, fl_runtime.report.stats; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "False"
