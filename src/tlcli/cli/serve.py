"""``tlcli serve``: the classifier over HTTP, with a page for phone cameras."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from tlcli.cli import output


def serve(
    model: Annotated[Optional[str], typer.Argument(help="A checkpoint, run folder, run name or exported .onnx file [default: the latest run].")] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on; the default serves this machine only. Use 0.0.0.0 to let phones on the network in.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="TCP port.")] = 8000,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001, help="Largest accepted upload, in MB.")] = 10.0,
    topk: Annotated[int, typer.Option("--topk", "-k", min=1, help="Classes returned per image.")] = 5,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps (checkpoints only).")] = "auto",
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Uploads decoded and classified at once, each in a worker thread. This bounds memory: a PNG near the pixel limit takes ~0.7 GB while it decodes.")] = 1,
    queue: Annotated[int, typer.Option("--queue", min=0, help="Uploads that may wait for a worker; more at once get 503 with Retry-After.")] = 8,
) -> None:
    """Serve GET / (a page: take a photo or choose a file, see the top classes), POST /predict
    (multipart field 'image' -> JSON top-k), GET /health and GET /classes. Stop with Ctrl-C.
    """
    from tlcli.errors import TlcliError
    from tlcli.prediction import load_classifier
    from tlcli.serving import create_app

    try:
        import uvicorn
    except ImportError:
        raise TlcliError("serving needs the serve extra: pip install 'tlcli[serve]'") from None
    classifier = load_classifier(model, device=device)
    app = create_app(classifier, max_bytes=int(max_upload_mb * 1024 * 1024), topk=topk, concurrency=concurrency, queue=queue)
    output.info(f"serving {classifier.source} on http://{host}:{port}/ ({len(classifier.classes)} classes)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
