"""``osteoai serve-dicom``: a DICOM node that screens every CT study it receives and forwards the SEG,
SR and key images (see OsteoAILib/dicom_node)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, required=True, help="port to listen on (C-STORE, C-ECHO)")
    p.add_argument("--ae-title", default="OSTEOAI", help="this node's AE title (default OSTEOAI)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default all); with --health: the node's")
    p.add_argument("--forward", help="destination of the results, AET@HOST:PORT (a PACS or viewer)")
    p.add_argument("--work", help="work folder: received studies, queues, results and node.log (created)")
    p.add_argument(
        "--quiet-seconds",
        type=float,
        default=10.0,
        help="a study is complete after this long without a new instance (default 10); once the "
        "sending association has closed, 2 s suffice",
    )
    p.add_argument(
        "--health",
        action="store_true",
        help="instead of serving: C-ECHO the node at --host/--port, print its queues (with --work); "
        "exit 0 when it answers",
    )
    from ..options import add_arguments as add_run_options

    add_run_options(p, names=("segmenter", "device"))


def _logging(work: Path) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    root = logging.getLogger("osteoai.node")
    root.setLevel(logging.INFO)
    for h in (logging.StreamHandler(sys.stderr), logging.FileHandler(work / "node.log")):
        h.setFormatter(fmt)
        root.addHandler(h)
    # pynetdicom logs every association with the peers' AE titles and addresses only at DEBUG; keep it quiet.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def main(args) -> int:
    from OsteoAIBaseLib.errors import InputError

    if args.health:
        from ..dicom_node.health import health

        host = "127.0.0.1" if args.host == "0.0.0.0" else args.host
        ok, line = health(host, args.port, args.ae_title, args.work)
        print(line)
        return 0 if ok else 1
    if not args.forward or not args.work:
        raise InputError("serve-dicom needs --forward AET@HOST:PORT and --work DIR")
    from ..dicom_node.forward import Destination
    from ..dicom_node.node import Node, NodeConfig

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    _logging(work)
    cfg = NodeConfig(
        work=str(work),
        port=args.port,
        forward=Destination.parse(args.forward),
        ae_title=args.ae_title,
        host=args.host,
        quiet_s=args.quiet_seconds,
        pipeline_options={"segmenter": args.segmenter, "device": args.device},
    )
    node = Node(cfg)
    signal.signal(signal.SIGTERM, lambda *_: node.stop_event.set())
    try:
        node.serve()
    except KeyboardInterrupt:
        node.stop_event.set()
    return 0
