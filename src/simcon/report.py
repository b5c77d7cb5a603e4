"""Tables as standalone HTML pages, so `snakemake --report` shows them browsable rather than as downloads."""

from __future__ import annotations

import html
import os

import pandas as pd

from simcon.io import atomic_path

STYLE = (
    "body{font-family:sans-serif;font-size:14px;margin:1em}"
    "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}caption{text-align:left;padding:4px 0}"
)


def write_table_html(path: str | os.PathLike, frame: pd.DataFrame, title: str) -> None:
    """Write `frame` as an HTML page with one table (numbers to 4 significant digits), atomically."""
    table = frame.to_html(index=False, float_format=lambda x: f"{x:.4g}", na_rep="", border=0)
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h3>{html.escape(title)}</h3>{table}</body></html>\n"
    )
    with atomic_path(path) as tmp:
        tmp.write_text(page)
