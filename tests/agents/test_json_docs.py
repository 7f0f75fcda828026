"""docs/json.md stays true: every field an example shows is still in the command's real output, every
real output is exactly its model of gitmail/api/results.py, and the model tables are the generated ones."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from gitmail.api import results
from gitmail.api.session import SHORT_ID
from tests.agents.jsondoc import MARKER, Example, collect, key_paths

DOC = Path(__file__).resolve().parents[2] / "docs" / "json.md"


def _documented() -> dict[str, object]:
    text = DOC.read_text().split(MARKER, 1)[1]
    out: dict[str, object] = {}
    for m in re.finditer(r"### `([^`]+)`\n.*?```json\n(.*?)\n```", text, re.S):
        out[m.group(1)] = json.loads(m.group(2))
    return out


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> list[Example]:
    root = tmp_path_factory.mktemp("jsondoc") / "scenario"
    root.mkdir()
    return collect(root)


def model_for(title: str) -> type[results.Result]:
    """The one model whose ``used_by`` names the command of example ``title`` ("send (queued)" is ``send``)."""
    command = "gitmail " + re.sub(r" \(.*\)$", "", title)
    found = [m for m in results.models() if command in results.uses(m)]
    assert len(found) == 1, f"{command}: {len(found)} models say they are its result: {found}"
    return found[0]


def test_every_documented_field_still_exists(examples: list[Example]) -> None:
    documented = _documented()
    actual = {ex.title: ex.output for ex in examples}
    required = {"init", "send", "list", "read", "mark", "archive", "reply", "thread", "members", "whoami", "verify",
                "log", "sync", "group create", "group list", "respond", "ack", "list --awaiting-ack",
                "hook claude session-start", "hook claude prompt", "hook claude install"}
    assert required <= set(documented), required - set(documented)
    for title, shown in documented.items():
        assert title in actual, f"docs/json.md shows {title!r}, which the scenario no longer produces"
        missing = key_paths(shown) - key_paths(actual[title])
        assert not missing, f"{title}: fields documented but gone: {sorted(missing)}"


def test_every_real_output_is_exactly_its_model(examples: list[Example]) -> None:
    """Strict JSON validation (no coercion, no unknown field, no missing field), and nothing lost on the way back."""
    for ex in examples:
        model = model_for(ex.title)
        try:
            parsed = model.model_validate_json(json.dumps(ex.output), strict=True)
        except Exception as e:  # the title says which command drifted from its model
            raise AssertionError(f"{ex.title}: output is not a {model.__name__}: {e}") from None
        assert parsed.dump() == ex.output, ex.title


def test_send_reply_respond_and_ack_carry_one_outcome_shape(examples: list[Example]) -> None:
    """Issue #11: CLI send, reply and respond print one shape; each ack item carries the same outcome fields."""
    out: dict[str, Any] = {ex.title: ex.output for ex in examples}
    shapes = {t: list(out[t]) for t in ("send", "reply", "respond", "send (queued)")}
    assert len({tuple(v) for v in shapes.values()}) == 1, shapes
    outcome = ["outcome", "reason", "delivered", "queued", "refused", "queued_in"]
    assert all(k in shapes["send"] for k in outcome)
    [ack] = out["ack"]["acks"]
    assert all(k in ack for k in outcome) and ack["queued_in"] == {}


def test_docs_carry_the_generated_model_tables() -> None:
    text = DOC.read_text()
    assert results.replace_section(text) == text, "regenerate with: python -m gitmail.api.results --write docs/json.md"


def test_every_model_field_is_described_and_every_command_has_one_model() -> None:
    assert results.SHORT == SHORT_ID
    commands: dict[str, str] = {}
    for m in results.models():
        for name, f in m.model_fields.items():
            assert f.description, f"{m.__name__}.{name} has no description"
        for u in results.uses(m):
            assert u not in commands, f"{u}: both {commands[u]} and {m.__name__}"
            commands[u] = m.__name__
        m.model_json_schema()  # every model has a JSON schema (the MCP outputSchema)
    assert model_for("send (queued)") is results.Sent


def test_the_generated_tables_name_types_and_links() -> None:
    md = results.markdown()
    assert "| `from` | string | sender (member name)" in md
    assert "| `attachments` | list of [`SavedAttachment`](#savedattachment) |" in md
    assert "| `reason` | string or null |" in md
    assert "| `refused` | object (string -> string) |" in md
    assert "| `outcome` | `delivered` or `queued` or `refused` |" in md


def test_org_settings_cover_every_policy_field() -> None:
    """`gitmail org --json` prints the policy fields its model knows: a new OrgPolicy field needs one too."""
    from gitmail.core.model import OrgPolicy

    assert list(results.OrgSettings.model_fields) == list(OrgPolicy.model_fields)
