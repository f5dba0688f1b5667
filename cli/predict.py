"""`effnet predict`: the most probable classes of image files, by a trained checkpoint or an exported model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from effnet.cli.common import ProgressBar, clean_input_errors, console, emit_json, literal, progress_console
from effnet.nas.choices import WEIGHTS

SKIPPED_SHOWN = 5
"""Files that did not decode, named on the terminal (--json lists them all)."""


def print_result(data: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"{literal(data['spec'])} ({data['format']}, {data['weights']} weights) @ {data['resolution']} px, "
        f"{len(data['classes'])} classes"
    )
    table.add_column("image", overflow="fold")
    top = max(len(p["top"]) for p in data["predictions"])
    for rank in range(1, top + 1):
        table.add_column(f"#{rank}")
        table.add_column("p", justify="right")
    for prediction in data["predictions"]:
        cells = [cell for best in prediction["top"] for cell in (literal(best["class"]), f"{best['probability']:.3f}")]
        table.add_row(literal(prediction["image"]), *cells)
    console.print(table)


@clean_input_errors({"top_k": "--top-k", "weights": "--weights"})
def predict(
    model: Path = typer.Argument(
        ...,
        metavar="CHECKPOINT_OR_MODEL",
        help="An effnet training checkpoint or its run directory (best.pt), or an ONNX or "
        "TorchScript file written by effnet export-model.",
    ),
    images: list[str] = typer.Argument(
        ...,
        metavar="IMAGES...",
        help="Image files, folders (searched recursively for image files) or glob patterns ('photos/**/*.jpg').",
    ),
    top_k: int = typer.Option(5, "--top-k", help="Classes shown per image, most probable first (at most all)."),
    weights: str = typer.Option(
        "best",
        "--weights",
        help="A checkpoint's weights: best (those that scored best on validation), ema or raw.",
        autocompletion=lambda: list(WEIGHTS),
    ),
    device: str = typer.Option(
        "auto",
        "--device",
        help="auto | cpu | cuda | cuda:N (ONNX: onnxruntime's CPU provider, or its CUDA one on cuda).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Classify images with a trained network, each prepared as its validation images were (the transform the
    checkpoint or the exported file records). A file that does not decode as an image is named and left out;
    when none decodes, or a path does not exist, the command exits 2.
    """
    from effnet.nas.predict import predict as run

    with ProgressBar("predict", enabled=not as_json) as bar:
        result = run(
            model,
            images,
            top_k=top_k,
            weights=weights,
            device=device,
            on_progress=lambda progress: bar.update(progress.done, progress.total),
        )
    data = result.as_dict()
    if result.skipped:
        progress_console.print(
            f"[yellow]warning:[/] {len(result.skipped)} file(s) did not decode as images and were "
            f"left out: {literal('; '.join(result.skipped[:SKIPPED_SHOWN]))}"
            + (" ..." if len(result.skipped) > SKIPPED_SHOWN else ""),
            soft_wrap=True,
        )
    if as_json:
        emit_json(data)
    else:
        print_result(data)
