"""The driver's queue without a cluster: a worker that dies or a bug is tried again up to ``retries`` times, a user
error once; a worker Ray is restarting gets no file until it answers again."""

from __future__ import annotations

import types

from fersr_stream.archive import driver
from fersr_stream.archive.outcome import Outcome


class ActorError(Exception):
    pass


class Unavailable(ActorError):
    pass


class TaskError(Exception):
    pass


class Ref:
    def __init__(self, value):
        self.value = value


class FakeRay:
    """What the queue uses of Ray: every call is ready at once; a value that is an exception is raised by get."""

    exceptions = types.SimpleNamespace(RayActorError=ActorError, ActorUnavailableError=Unavailable,
                                       RayTaskError=TaskError)

    def wait(self, refs, num_returns, timeout):
        return refs[:1], refs[1:]

    def get(self, ref):
        if isinstance(ref.value, Exception):
            raise ref.value
        return ref.value


class Worker:
    """Answers each file with the next of ``results[file]``; ``ready`` with the next of ``readies``."""

    def __init__(self, results: dict[str, list], readies=()):
        self.results, self.readies, self.files = results, list(readies), []
        self.annotate = types.SimpleNamespace(remote=self._annotate)
        self.ready = types.SimpleNamespace(remote=lambda: Ref(self.readies.pop(0) if self.readies else {}))

    def _annotate(self, name, plan, settings):
        self.files.append(name)
        return Ref(self.results[name].pop(0))


def run(worker: Worker, files: list[str], retries: int = 2) -> Outcome:
    outcome, forgotten = Outcome(files), []
    queue = driver._Queue(FakeRay(), dict.fromkeys(files), files, "settings", outcome, [worker], retries)
    queue.run(lambda: None, forget=forgotten.append)
    outcome.forgotten = forgotten
    return outcome


def done(frames=3):
    return {"frames": frames, "faces": 1, "seconds": 0.1}


def test_a_dead_worker_is_waited_for_and_its_file_tried_again():
    worker = Worker({"a": [ActorError("killed"), done()], "b": [done()]}, readies=[Unavailable("restarting"), {}])
    outcome = run(worker, ["a", "b"])
    assert outcome.done == {"a": done(), "b": done()} and not outcome.failed
    assert worker.files == ["a", "a", "b"]  # again first, once the worker answered


def test_a_bug_is_tried_again_then_reported_with_its_traceback():
    bug = TaskError("Traceback (most recent call last):\n  File x\nZeroDivisionError: division by zero")
    worker = Worker({"a": [bug, bug, bug], "b": [done()]})
    outcome = run(worker, ["a", "b"], retries=2)
    assert outcome.failed["a"] == (str(bug), 3) and outcome.done == {"b": done()}
    assert "a: failed after 3 tries: Traceback" in outcome.text() and "  ZeroDivisionError" in outcome.text()


def test_a_user_error_is_not_tried_again():
    worker = Worker({"a": [{"error": "a.mp4: not a video"}], "b": [done()]})
    outcome = run(worker, ["a", "b"])
    assert outcome.failed == {"a": ("a.mp4: not a video", 1)} and worker.files == ["a", "b"]
    assert "a: failed: a.mp4: not a video" in outcome.text().splitlines()


def test_no_retries():
    worker = Worker({"a": [ActorError("killed")]})
    outcome = run(worker, ["a"], retries=0)
    assert outcome.failed["a"][1] == 1 and outcome.failed["a"][0].startswith("its worker died: killed")
    assert outcome.forgotten == ["a"]


def test_the_summary_tells_each_files_warnings():
    warned = {**done(), "warnings": ["a.mp4: skipped 1 damaged packet"]}
    outcome = run(Worker({"a": [warned], "b": [done()]}), ["a", "b"])
    assert "a: warning: a.mp4: skipped 1 damaged packet" in outcome.text().splitlines()


def test_a_stopped_run_names_the_files_it_did_not_finish():
    outcome = Outcome(["a", "b", "c", "d"], done={"a": done()}, skipped=["b"])
    assert outcome.text().splitlines()[-1] == ("not done: c, d (their outputs, if any, are as they were; the same "
                                               "command goes on)")
    finished = run(Worker({"a": [done()], "b": [done()]}), ["a", "b"])
    assert "not done" not in finished.text()
