"""``tlcli serve``: the classifier over HTTP, with a page for phone cameras."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from tlcli.cli import output


def serve(
    model: Annotated[Optional[str], typer.Argument(help="A checkpoint, run folder, run name or exported .onnx file [default: the latest run].")] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on; the default serves this machine only. Use 0.0.0.0 to let phones on the network in.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="TCP port.")] = 8000,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001, help="Largest accepted upload (all its images together), in MB.")] = 10.0,
    topk: Annotated[int, typer.Option("--topk", "-k", min=1, help="Classes returned per image, unless a request asks ?topk=N.")] = 5,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps (checkpoints only).")] = "auto",
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Uploads decoded and classified at once, each in a worker thread. This bounds memory: a PNG near the pixel limit takes ~0.7 GB while it decodes.")] = 1,
    queue: Annotated[int, typer.Option("--queue", min=0, help="Uploads that may wait for a worker; more at once get 503 with Retry-After.")] = 8,
    receiving: Annotated[int, typer.Option("--receiving", min=1, help="Uploads whose bodies may arrive at once, before they take a worker or a place in the queue; each holds up to --max-upload-mb in memory. More at once get 503.")] = 32,
    body_timeout: Annotated[float, typer.Option("--body-timeout", min=0.1, help="Seconds an upload's whole body may take to arrive; a slower one gets 408 and its place is freed.")] = 30.0,
) -> None:
    """Serve GET / (a page: take a photo or choose a file, see the top classes), POST /predict
    (multipart fields 'image', one or more files, ?topk=N -> JSON top-k per file), GET /health
    and GET /classes, logging one line per request on stderr. Stop with Ctrl-C, SIGTERM or SIGHUP:
    uploads under way are answered, then "stopped" and exit 0.
    """
    from tlcli.serving import open_server

    server = open_server(
        model, host=host, port=port, device=device, max_bytes=int(max_upload_mb * 1024 * 1024), topk=topk,
        concurrency=concurrency, queue=queue, receiving=receiving, body_timeout=body_timeout, log=output.info,
    )
    output.info(f"serving {server.classifier.source} on {server.url} ({len(server.classifier.classes)} classes)")
    stopped_by = server.run()
    output.info(f"stopped ({stopped_by})" if stopped_by else "stopped")
