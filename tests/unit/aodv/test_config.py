"""Config validation: bad values refused with the field's name; RFC defaults; claim 69."""
import json

import pytest

from testbed.aodv.config import ConfigError, load_config, parse_config


def test_rfc_defaults_and_derived_times():
    c = parse_config({"address": "10.0.0.1"})
    t = c.timers
    assert (t.ttl_start, t.ttl_increment, t.ttl_threshold, t.rreq_retries) == (1, 2, 7, 2)
    assert t.net_traversal_time == pytest.approx(2.8)
    assert t.ring_traversal_time(1) == pytest.approx(0.24)
    assert t.my_route_timeout == 6 and t.delete_period == 15
    assert not (c.handover.enabled or c.weighted_search.enabled or c.gratuitous.enabled)


@pytest.mark.parametrize("data,field", [
    ({"address": "10.0.0.300"}, "address"),
    ({"address": "10.0.0.1", "timers": {"ttl_start": 0}}, "timers.ttl_start"),
    ({"address": "10.0.0.1", "bogus": "x"}, "bogus"),
    ({"address": "10.0.0.1", "weighted_search": {"weights": {"nope": 1}}}, "weighted_search"),
    ({"address": "10.0.0.1", "managed_prefixes": ["10.0.0.0/33"]}, "managed_prefixes.0"),
])
def test_bad_values_name_the_field(data, field):
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    assert field in str(e.value)


def test_claim_69_thresholds():
    with pytest.raises(ConfigError, match="gratuitous.threshold_ms"):
        parse_config({"address": "10.0.0.1", "route_refresh_threshold_ms": 3000,
                      "gratuitous": {"enabled": True, "threshold_ms": 3000}})
    parse_config({"address": "10.0.0.1", "route_refresh_threshold_ms": 2000,
                  "gratuitous": {"enabled": True, "threshold_ms": 3000}})


def test_json_and_yaml_files(tmp_path):
    j = tmp_path / "a.json"
    j.write_text(json.dumps({"address": "10.0.0.1", "role": "mn"}))
    assert load_config(j).role == "mn"
    y = tmp_path / "a.yaml"
    y.write_text("address: 10.0.0.2\nhandover:\n  enabled: true\n")
    assert load_config(y).handover.enabled
    bad = tmp_path / "b.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_shipped_examples_are_valid():
    from pathlib import Path

    import testbed.aodv

    examples = sorted((Path(testbed.aodv.__file__).parent / "examples").glob("*.yaml"))
    assert len(examples) >= 3
    for f in examples:
        load_config(f)
