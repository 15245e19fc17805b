"""The checker's judgement of one driver answer against the wire contract (docs/flexvolume.md section 2)."""

from __future__ import annotations

import pytest

from flexvol.core.errors import InvalidInput
from flexvol.sanity.caller import judge
from flexvol.sanity.engine import selected_checks
from flexvol.sanity.node import Node, driver_name_of


@pytest.mark.parametrize(("code", "output", "problem"), [
    (0, '{"status":"Success"}\n', ""),
    (1, '{"status":"Failure","message":"no"}', ""),
    (0, '  {"status":"Not supported"}  ', ""),
    (0, 'log line\n{"status":"Success"}', "not exactly one JSON object"),
    (0, '{"status":"Success"}{"status":"Success"}', "not exactly one JSON object"),
    (0, "-ne {}", "not exactly one JSON object"),
    (0, "", "not exactly one JSON object"),
    (0, '["Success"]', "not an object"),
    (0, '{"status":"success"}', "is not one of"),
    (1, '{"status":"Success"}', "Success with exit code 1"),
    (1, '{"status":"Failure"}', "Failure without a message"),
    (0, '{"status":"Success","capabilities":null}', "not an object"),
    (0, '{"status":"Success","capabilities":{"attach":"false"}}', "not a JSON boolean"),
    (0, '{"status":"Success","attached":"True"}', "not a JSON boolean"),
])
def test_judge(code: int, output: str, problem: str) -> None:
    _, found = judge("mount", code, output, timed_out=False)
    if problem:
        assert problem in found
    else:
        assert found == ""


def test_a_timed_out_call_is_a_problem_whatever_it_printed() -> None:
    _, found = judge("mount", None, '{"status":"Success"}', timed_out=True)
    assert "did not finish in time" in found


def test_only_and_skip_select_checks_and_reject_unknown_names() -> None:
    assert [check.name for check in selected_checks(["repeat", "init"], [])] == ["init", "repeat"]
    assert "repeat" not in [check.name for check in selected_checks([], ["repeat"])]
    with pytest.raises(InvalidInput, match="unknown check 'nope'"):
        selected_checks(["nope"], [])


def test_kubelet_layout_and_driver_name() -> None:
    # docs/flexvolume.md sections 1 and 5: the name comes from <vendor>~<driver>; paths keep
    # the "/" or use "~".
    node = Node("/r", "example.com/loop", "tok")
    assert node.device_mount_path("pv1") == (
        "/r/kubelet/plugins/kubernetes.io/flexvolume/example.com/loop/mounts/pv1")
    assert node.pod_dir("uid", "pv1") == "/r/kubelet/pods/uid/volumes/example.com~loop/pv1"
    assert driver_name_of("/plugins/example.com~loop/loop") == "example.com/loop"
    assert driver_name_of("/opt/bin/my-driver") == "sanity/my-driver"
    assert node.ours("/r/data/volumes/v.img") and node.ours("/elsewhere/stok-1.img")
    assert not node.ours("/rr/data") and not node.ours("/var/lib/tok.img")
