"""The lazy graph on a real 2-process dask.distributed cluster: same result, model loaded once per worker."""

from __future__ import annotations

import functools
import os

import cloudpickle
import numpy as np
import pytest
import torch

from napari_dgno import DGNO
from napari_dgno.engine import deblur, deblur_lazy
from napari_dgno.model.configs import tiny_network_g

distributed = pytest.importorskip("distributed")
checkpoints = pytest.importorskip("napari_dgno.checkpoints")


def _worker_cache_info():
    from napari_dgno.engine.models import cache_info

    return cache_info()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = DGNO(**tiny_network_g())
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({"params": model.state_dict()}, path)
    return path


@pytest.fixture
def one_thread():
    """Workers run torch single-threaded (dask sets OMP_NUM_THREADS=1); match it for a bitwise comparison."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
    ) as cluster, distributed.Client(cluster) as client:
        yield client


def test_cluster_result_equals_local_and_weights_do_not_travel(client, checkpoint, one_thread):
    image = (np.random.default_rng(0).random((6, 64, 64)) * 1000).astype(np.float32)
    local = deblur(image, str(checkpoint), tile=64, overlap=16, device="cpu")
    lazy = deblur_lazy(image, str(checkpoint), tile=64, overlap=16, device="cpu")
    graph_bytes = len(cloudpickle.dumps(dict(lazy.__dask_graph__())))
    weight_bytes = sum(p.numel() * p.element_size() for p in DGNO(**tiny_network_g()).parameters())
    assert graph_bytes < weight_bytes / 20  # the graph carries the path, not the weights

    remote = client.compute(lazy).result()
    np.testing.assert_array_equal(remote, local)

    infos = client.run(_worker_cache_info)
    assert len(infos) == 2
    assert sum(info["loads"] + info["hits"] for info in infos.values()) == 6  # one model use per plane
    for info in infos.values():  # each worker that worked loaded the model exactly once
        assert info["loads"] <= 1
        assert info["entries"] == ([(f"source:{checkpoint.resolve()}", "cpu")] if info["loads"] else [])
    assert sum(info["loads"] for info in infos.values()) == 2  # both workers took part


def test_cluster_runs_a_factory_and_keeps_it_per_worker(client, checkpoint, one_thread):
    factory = functools.partial(checkpoints.load_model, str(checkpoint), device="cpu")
    image = (np.random.default_rng(1).random((4, 64, 64)) * 100).astype(np.uint16)
    remote = deblur_lazy(image, factory, axes="ZYX", tile=64, overlap=16, device="cpu").compute()
    local = deblur(image, str(checkpoint), axes="ZYX", tile=64, overlap=16, device="cpu")
    np.testing.assert_array_equal(remote, local)
    factory_entries = [e for info in client.run(_worker_cache_info).values() for e in info["entries"]
                       if e[0].startswith("factory:")]
    assert 1 <= len(factory_entries) <= 2 and len(set(factory_entries)) == 1


def test_local_gpu_cluster_gives_each_worker_its_own_gpu():
    from napari_dgno.engine import local_gpu_cluster

    with local_gpu_cluster([0, 1]) as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        info = client.scheduler_info()["workers"]
    assert sorted(seen.values()) == ["0", "1"]
    assert all(w["nthreads"] == 1 for w in info.values())
