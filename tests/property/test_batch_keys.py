"""The batch changelog's row keys (app/batch_stage.py, encode_batch_key): byte-for-byte the compact JSON that
``json.dumps`` gives, for any ids, so that a key written by any version is replaced, not duplicated, when the
compacted topic is cleaned (a second spelling of one key would bring a deleted row back on restore)."""

from __future__ import annotations

import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from posrecon.app.batch_stage import encode_batch_key

ids = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127)),
    st.from_regex(r"bt-[0-9]{1,6}", fullmatch=True),
)


@settings(max_examples=500, deadline=None)
@given(batch_id=ids, notice_id=ids)
@example(batch_id='bt-"1"', notice_id="n\\1")
@example(batch_id="bt-\x7f", notice_id="n-\x1f")
@example(batch_id="bt-é", notice_id="")
def test_a_key_is_the_compact_json_of_its_ids(batch_id: str, notice_id: str) -> None:
    assert encode_batch_key((batch_id, notice_id)) == json.dumps([batch_id, notice_id], separators=(",", ":")).encode()
