"""zoo-predict --url: batches of files posted to a running service's /predict as multipart.

Several batches are in flight at once (the service batches across requests anyway). A file the
service refuses gets the service's reason; a batch over the service's body limit is split; a
full queue is waited out (Retry-After). What no file can get past (an unknown model, a wrong
API key, a service that cannot be reached) stops the run with the service's own words.
"""

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from app.cli.rows import Row, Stopped, read_file

IN_FLIGHT = 4  # requests at once: enough to keep a service's workers busy
RETRIES = 10  # times a batch waits out a full queue before the run gives up


def _detail(problem: dict[str, Any], name: str) -> str:
    """A problem's detail without the file name the service puts in front of it."""
    return str(problem.get("detail", problem)).removeprefix(f"{name}: ")


def _post(client: httpx.Client, model: str, paths: list[str]) -> list[Row]:
    """One batch: rows in order for every file, readable or not."""
    rows: dict[int, Row] = {}
    files = []
    for i, path in enumerate(paths):
        data, error = read_file(path)
        if error:
            rows[i] = Row(path, error=error)
        else:
            files.append((i, data))
    if files:
        for i, row in zip([i for i, _ in files], _ask(client, model, paths, files), strict=True):
            rows[i] = row
    return [rows[i] for i in range(len(paths))]


def _ask(
    client: httpx.Client, model: str, paths: list[str], files: list[tuple[int, bytes]]
) -> list[Row]:
    """The service's answer for these files (index into ``paths``, bytes), a row each."""
    parts = [("files", (str(i), data, "application/octet-stream")) for i, data in files]
    for _ in range(RETRIES):
        try:
            r = client.post(f"/predict/{model}", params={"top_k": 1}, files=parts)
        except httpx.TransportError as exc:
            raise Stopped(f"cannot reach {client.base_url}: {exc}") from None
        body = r.json() if r.headers.get("content-type", "").endswith("json") else {}
        kind = body.get("type", "")
        if r.status_code == 503 and "retry-after" in r.headers:  # a full queue: wait it out
            time.sleep(float(r.headers["retry-after"]))
            continue
        too_many = kind.endswith(("/content-too-large", "/too-many-files"))
        if too_many and len(files) > 1:  # over the service's limits: in two requests
            half = len(files) // 2
            return _ask(client, model, paths, files[:half]) + _ask(
                client, model, paths, files[half:]
            )
        if too_many:  # one file, over the service's body limit
            return [Row(paths[files[0][0]], error=str(body.get("detail")))]
        if r.status_code == 200:
            answers = body["predictions"]
        elif r.status_code in (413, 422) and ("index" in body or "problems" in body):
            answers = body.get("problems", [body])  # no file of the batch could be used
        elif r.status_code >= 500:  # this batch failed there (the service's log has why)
            answers = [body or {"detail": r.text}] * len(files)
        else:
            raise Stopped(f"{r.status_code} from {r.request.url}: {body.get('detail', r.text)}")
        rows = []
        for (i, _), answer in zip(files, answers, strict=True):
            if "type" in answer and "label" in answer:  # not one digit: the guess, and why not
                why = f"{answer['type'].rsplit('/', 1)[-1]}: {_detail(answer, str(i))}"
                rows.append(Row(paths[i], answer["label"], answer["confidence"], why))
            elif "label" in answer:
                rows.append(Row(paths[i], answer["label"], answer["confidence"]))
            else:
                rows.append(Row(paths[i], error=_detail(answer, str(i))))
        return rows
    raise Stopped(f"the service stayed busy (503) through {RETRIES} tries")


def label_remote(
    url: str, model: str, paths: list[str], batch_size: int, key: str | None
) -> Iterator[list[Row]]:
    """Rows for every file, a batch at a time, in order, from the service at ``url``."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        pool = ThreadPoolExecutor(IN_FLIGHT)
        try:
            yield from pool.map(lambda batch: _post(client, model, batch), batches)
        finally:  # after a fatal refusal, the batches not yet sent are not sent
            pool.shutdown(cancel_futures=True)
