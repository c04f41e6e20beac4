"""The schedule search on a real multi-node Ray cluster on this machine (a head and a second node,
each its own raylet, on 127.0.0.1 only): a node dies in the middle of a trial, the driver dies
later, and the search still finishes with nothing lost and nothing run twice."""

from __future__ import annotations

import json
import time

import pytest
import ray
from ray import tune
from ray.cluster_utils import Cluster

from tune_search import LRLawSearcher, ScheduleSpace
from tune_search.simulate import SimulatedWorld

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster():
    # on 127.0.0.1 only: conftest.py sets RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before Ray loads
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = c.add_node(num_cpus=1)
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    yield c, worker
    ray.shutdown()
    c.shutdown()


def test_search_survives_a_node_failure_and_a_driver_failure(cluster, tmp_path, monkeypatch):
    c, worker = cluster
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0")
    world = SimulatedWorld(law="momentum", seed=5)
    space = ScheduleSpace(
        world.peak_lr,
        world.total_steps,
        world.warmup_steps,
        kinds={"constant": {}, "cosine": {"final_ratio": [0.0, 0.1]},
               "wsd": {"decay_fraction": [0.1, 0.2, 0.3], "decay_shape": ["linear", "1-sqrt"]}},
    )  # fmt: skip
    starts, marker = tmp_path / "starts.tsv", tmp_path / "interrupted"
    experiment = tmp_path / "shared" / "search"
    simulated = world.trainable(metric="loss", sleep=0.01)

    def trainable(config):
        trial_id = tune.get_context().get_trial_id()
        node = ray.get_runtime_context().get_node_id()
        with open(starts, "a") as fh:
            fh.write(f"{trial_id}\t{node}\t{config['schedule']}\n")
        while "lrlaw_stop_step" not in config and not marker.exists():
            time.sleep(0.02)  # full runs wait for the driver's failure (see Faults)
        simulated(config)

    def started() -> list[tuple[str, str, str]]:
        return [tuple(x.split("\t")) for x in starts.read_text().splitlines()]

    def persisted() -> set[str]:
        try:
            state = json.loads(next(experiment.glob("experiment_state-*.json")).read_text())
            saved = json.loads(next(experiment.glob("searcher-state-*.pkl")).read_text())
        except (StopIteration, OSError, ValueError):
            return set()
        trials = [json.loads(t[0]) for t in state["trial_data"]]
        done = {t["trial_id"] for t in trials if t["status"] == "TERMINATED"}
        return done & {r["trial_id"] for r in saved["book"]["records"] if r["completed"]}

    class Faults(tune.Callback):
        """Kills the second node (its raylet) once a pilot on it has reported 10 losses; fails
        the driver once both pilots have terminated and that reached the storage path."""

        def __init__(self, nodes: dict) -> None:
            self.nodes = nodes  # the cluster and the node to kill: not pickled with the Tuner
            self.killed: str | None = None
            self.pilots: set[str] | None = None

        def __getstate__(self) -> dict:
            return {**self.__dict__, "nodes": {}}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if self.killed is None and "lrlaw_stop_step" in trial.config:
                node = self.nodes["worker"]
                on_worker = [t for t, n, _ in started() if n == node.node_id]
                if trial.trial_id in on_worker and result["training_iteration"] >= 10:
                    self.killed = trial.trial_id
                    self.nodes["cluster"].remove_node(node)

        def on_step_begin(self, iteration, trials, **info):
            if marker.exists() or self.killed is None:
                return
            pilots = {t.trial_id for t in trials if "lrlaw_stop_step" in t.config}
            if len(pilots) == 2 and pilots <= persisted():
                self.pilots = pilots
                marker.touch()
                raise RuntimeError("simulated failure of the driver")

    def make() -> LRLawSearcher:
        return LRLawSearcher(
            space, metric="loss", top_k=2, law_options=world.fit_options("momentum")
        )

    searcher, faults = make(), Faults({"cluster": c, "worker": worker})
    run_config = tune.RunConfig(
        name="search",
        storage_path=str(tmp_path / "shared"),  # a path every node sees
        failure_config=tune.FailureConfig(max_failures=2),
        callbacks=[faults],
        verbose=0,
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1, max_concurrent_trials=2),
        run_config=run_config,
    )
    with pytest.raises(Exception, match="simulated failure of the driver"):
        tuner.fit()
    assert faults.killed is not None, "no pilot ran on the second node"
    assert len([n for n in ray.nodes() if n["Alive"]]) == 1
    # the pilot on the dead node was retried (Tune's max_failures) and finished
    killed = searcher.book.records[faults.killed]
    assert killed.restarts >= 1 and killed.status == "stopped" and killed.note.startswith("partial")
    deadline = time.monotonic() + 120
    while not faults.pilots <= persisted():  # an in-flight sync may still be writing
        assert time.monotonic() < deadline
        time.sleep(0.05)
    before = {rid: (list(r.steps), list(r.losses)) for rid, r in searcher.book.records.items()
              if rid in faults.pilots}  # fmt: skip

    results = tune.Tuner.restore(str(experiment), trainable=trainable).fit()
    assert not results.errors
    after = [t for t, _, _ in started()]
    runs = {t: after.count(t) for t in faults.pilots}
    assert runs[faults.killed] == 2 and all(  # the retry after the node failure, and no more
        n == 1 for t, n in runs.items() if t != faults.killed
    )
    resumed = make()
    resumed.restore_from_dir(str(experiment))
    assert resumed.finished_reason and resumed.recommendation()["source"] == "finished run"
    for rid, (steps, losses) in before.items():  # every reported point, once
        rec = resumed.book.records[rid]
        assert rec.steps == steps and rec.losses == losses
