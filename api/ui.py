"""``/ui``: the web page for jobs and search trees, served as static files (no build step).

The page holds no data of its own: it calls the API with the key typed into it, so the files
are served without a key. They go out with a strict Content-Security-Policy (scripts and
styles from this origin only, nothing inline), and the script sets every text the service
returns as text, never as HTML.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

UI_DIR = Path(__file__).parent / "ui"
UI_PATH = "/ui"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def is_ui_path(path: str) -> bool:
    return path == UI_PATH or path.startswith(UI_PATH + "/")


class UiFiles(StaticFiles):
    """The page's files, with the security headers above."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def ui_app() -> UiFiles:
    return UiFiles(directory=UI_DIR, html=True)
