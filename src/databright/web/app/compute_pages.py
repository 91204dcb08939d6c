"""The compute market (``/compute``, ``/compute/jobs/{id}``) and their JSON twins.

Handlers read the index. A job's receipt is verified against the chain on the first view of
that job (under the chain lock) and the result cached in the index: later views never touch
the chain.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from databright.market.views_compute import (
    PAGE_SIZE,
    JobDetail,
    job_detail,
    overview,
    receipt_verification,
)
from databright.web.app.templating import render

router = APIRouter()

PageQ = Annotated[int, Query(ge=1, le=100_000, description="Page of jobs (50 a page).")]
WorkersPageQ = Annotated[int, Query(ge=1, le=100_000, description="Page of workers.")]
JobId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The job's id on the ComputeMarket.")]


@router.get("/api/compute", tags=["compute"], summary="The compute market")
def api_compute(request: Request, page: PageQ = 1, workers_page: WorkersPageQ = 1
                ) -> dict[str, Any]:
    """Workers (class, stake, status, jobs, earned, slashed), determinism classes,
    coordinators (enclave, attestation kind, evidence CID), fees and jobs; wei as strings."""
    with request.app.state.ctx.read() as s:
        found = overview(s, workers_page=workers_page, jobs_page=page)
    return {**found.to_json(), "page": page, "workers_page": workers_page,
            "per_page": PAGE_SIZE}


@router.get("/api/compute/jobs/{job_id}", tags=["compute"], summary="A compute job")
def api_compute_job(request: Request, job_id: JobId) -> dict[str, Any]:
    """A job with its payouts and slashes, its receipt (when this server has the file) and the
    receipt's verification result (signature, payouts, chain, job, attestation)."""
    return _job(request, job_id).to_json()


@router.get("/compute", response_class=HTMLResponse, include_in_schema=False)
def compute_page(request: Request, page: PageQ = 1, workers_page: WorkersPageQ = 1
                 ) -> HTMLResponse:
    with request.app.state.ctx.read() as s:
        found = overview(s, workers_page=workers_page, jobs_page=page)
    return render(request, "compute.html", {
        "found": found, "page": page, "workers_page": workers_page,
        "pages": max(1, -(-found.job_count // PAGE_SIZE)),
        "worker_pages": max(1, -(-found.worker_count // PAGE_SIZE))})


@router.get("/compute/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
def compute_job_page(request: Request, job_id: JobId) -> HTMLResponse:
    return render(request, "compute_job.html", {"d": _job(request, job_id)})


def _job(request: Request, job_id: int) -> JobDetail:
    ctx = request.app.state.ctx
    with ctx.read() as s:
        found = job_detail(ctx.dep, s, job_id)
    if found.receipt is not None and found.verification is None:
        with ctx.chain_lock:  # once per job and receipt: the result is cached in the index
            receipt_verification(ctx.dep, job_id, allow_simulated=ctx.is_embedded)
        with ctx.read() as s:
            found = job_detail(ctx.dep, s, job_id)
    return found
