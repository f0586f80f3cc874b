"""observe_all: the same exposition as one observe() per value (it uses prometheus-client's fields)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from posrecon.metrics import AUTH_BUCKETS, LATENCY_BUCKETS, observe_all


def _histograms(buckets: tuple[float, ...]) -> tuple[CollectorRegistry, Histogram, CollectorRegistry, Histogram]:
    one, many = CollectorRegistry(), CollectorRegistry()
    return (
        one,
        Histogram("h", "h", buckets=buckets, registry=one),
        many,
        Histogram("h", "h", buckets=buckets, registry=many),
    )


def _samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("le", "")): s.value for m in registry.collect() for s in m.samples
            if not s.name.endswith("_created")}  # fmt: skip


amounts = st.lists(
    st.sampled_from(LATENCY_BUCKETS + AUTH_BUCKETS) | st.floats(min_value=0, max_value=1000) | st.integers(0, 400),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(amounts, max_size=4), st.sampled_from([LATENCY_BUCKETS, AUTH_BUCKETS]))
def test_observe_all_counts_like_observe(batches: list[list[float]], buckets: tuple[float, ...]) -> None:
    one, h_one, many, h_many = _histograms(buckets)
    for batch in batches:
        for amount in batch:
            h_one.observe(amount)
        observe_all(h_many, batch)
    expected, got = _samples(one), _samples(many)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        # the sum may differ in the last bits (added per batch, not per value); the buckets may not
        assert abs(got[key] - value) <= 1e-9 * max(1.0, abs(value)), (key, got[key], value)
    assert {k: v for k, v in got.items() if k[0] != "h_sum"} == {k: v for k, v in expected.items() if k[0] != "h_sum"}


def test_observe_all_on_a_bound_and_above_the_last_one() -> None:
    registry, h, _, _ = _histograms((1.0, 2.0))
    observe_all(h, [1.0, 1.5, 2.0, 99.0, 0.0])
    text = generate_latest(registry).decode()
    assert 'h_bucket{le="1.0"} 2.0' in text
    assert 'h_bucket{le="2.0"} 4.0' in text
    assert 'h_bucket{le="+Inf"} 5.0' in text
    assert "h_count 5.0" in text
    assert "h_sum 103.5" in text
