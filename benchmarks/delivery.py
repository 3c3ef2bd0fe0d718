"""Messages built per second and delivered per second to a loopback SMTP server.

Run from the repository root:

    .venv/bin/python benchmarks/delivery.py                 # 10,000 and 100,000 customers
    .venv/bin/python benchmarks/delivery.py --customers 2000

For each size: `delivery/mime.build_messages` builds every customer's MIME message (24 variants:
six segments by four arms, each a ~900-character body with the customer's first name in its
subject and greeting) into a Parquet file, then `delivery/send.deliver` sends them, recorded in a
fresh delivery ledger, to aiosmtpd's server on 127.0.0.1 (started and stopped here, in this
process's threads: the server's own Python cost is part of the figure), on
`--concurrency` connections with no rate limit. The customers are SYNTHETIC. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from personalization_assets.campaign.config import load_campaign  # noqa: E402
from personalization_assets.delivery.compliance import screen_campaign  # noqa: E402
from personalization_assets.delivery.ledger import OPEN_STATUSES, Ledger  # noqa: E402
from personalization_assets.delivery.mime import SigningKey, build_messages  # noqa: E402
from personalization_assets.delivery.send import deliver  # noqa: E402
from personalization_assets.delivery.transport import SmtpConnection  # noqa: E402
from personalization_assets_tests.delivery.smtp_server import Recorder, smtp_server  # noqa: E402

WAVE = "2026-11-16"
BODY = ("Hi {{first_name}},\n\nHope your season is off to a great start. It is a good time of year to get out there, and we can help.\n\n"
        "A lot has arrived since your last visit. This spring brings the Swiftline 4 trail shoe at $139, the TrailFlex Mid waterproof "
        "boot at $159, the Ridgeline 2 tent in a new Slate color, and a lighter Cascade 30L daypack made with 70% recycled nylon.\n\n"
        "We accept clean tents, backpacks, jackets, fleeces and hiking boots from any brand in good working condition, and we pay up "
        "to 40% of the item's current retail price, depending on its condition.\n\nAs always, members get free shipping on orders "
        "over $50 and early access to our seasonal sale.\n\nSee you on the trail,\nThe team")


def frames(n: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    segments = [f"segment_{i}" for i in range(6)]
    arms = ["control", "urgent", "informational", "friendly"]
    ids = np.array([f"C{i:07d}" for i in range(n)], dtype=object)
    names = rng.choice(np.array(["Ann", "Zoë", "Mateo", "Priya", "O'Brien", "Li", "Fatima", ""], dtype=object), n)
    customers = pd.DataFrame({"customer_id": ids, "email": [f"c{i}@mail.example" for i in range(n)], "first_name": names})
    segment = rng.choice(np.array(segments, dtype=object), n)
    arm = rng.choice(np.array(arms, dtype=object), n)
    assignments = pd.DataFrame({"wave": WAVE, "customer_id": ids, "segment": segment, "arm": arm,
                                "variant_id": segment + ":" + arm, "sent": True})
    variants = pd.DataFrame([{"segment": s, "variant_id": f"{s}:{a}", "subject": f"{a.title()} picks for you, {{{{first_name}}}}",
                              "body": BODY} for s in segments for a in arms])
    return assignments, customers, variants


def measure(n: int, concurrency: int) -> dict[str, float]:
    config = load_campaign(ROOT / "data" / "campaign.yaml")
    settings = config.delivery.model_copy(update={"rate_per_second": 100_000.0, "max_concurrency": concurrency})
    layout = screen_campaign(config)
    assignments, customers, variants = frames(n)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "email_messages.parquet"
        started = time.perf_counter()
        build_messages(assignments, customers, variants, config=config, wave=WAVE, layout=layout,
                       key=SigningKey.from_secret("benchmark-secret"), path=path)
        built = time.perf_counter() - started
        import duckdb

        listed = duckdb.sql(f"SELECT customer_id, email, message_id, raw_sha256 FROM read_parquet('{path.as_posix()}')").df()
        recorder = Recorder()
        with Ledger(Path(scratch) / "ledger.sqlite3") as ledger, smtp_server(recorder) as controller:
            ledger.enqueue(config.campaign_id, WAVE, listed)
            pending = ledger.rows(config.campaign_id, WAVE, OPEN_STATUSES)[["customer_id", "attempts"]].merge(listed[["customer_id", "email"]])
            started = time.perf_counter()
            report = deliver(path, ledger, campaign_id=config.campaign_id, wave=WAVE, envelope_from=config.sender.from_address,
                             settings=settings, pending=pending,
                             connect=lambda: SmtpConnection("127.0.0.1", controller.port, "none", None, None, 60.0))
            sent = time.perf_counter() - started
        assert len(recorder.accepted) == n == report.outcomes["sent"], (len(recorder.accepted), report.outcomes)
        return {"build_s": built, "send_s": sent, "bytes": path.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    print(f"## Delivery (SYNTHETIC customers; loopback aiosmtpd server; {args.concurrency} connections)\n")
    print("| customers | build s | built / s | file MiB | deliver s | delivered / s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.customers:
        result = measure(n, args.concurrency)
        print(f"| {n:,} | {result['build_s']:.2f} | {n / result['build_s']:,.0f} | {result['bytes'] / 2**20:.1f} | "
              f"{result['send_s']:.2f} | {n / result['send_s']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
