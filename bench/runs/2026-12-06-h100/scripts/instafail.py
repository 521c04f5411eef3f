"""pytest plugin: write each failure's id and traceback to $OUT/failures.txt as it happens,
and every finished test's id and outcome to $OUT/outcomes.txt."""
import os


def pytest_runtest_logreport(report):
    out = os.environ["OUT"]
    if report.failed:
        with open(os.path.join(out, "failures.txt"), "a") as f:
            f.write(f"==== {report.nodeid} ({report.when})\n{report.longreprtext}\n\n")
    if report.when == "call" or (report.when == "setup" and (report.failed or report.skipped)):
        with open(os.path.join(out, "outcomes.txt"), "a") as f:
            f.write(f"{report.outcome} {report.duration:.1f}s {report.nodeid}\n")
