"""Choosing the wire format: the ``[serde]`` settings, registering output schemas under TopicNameStrategy
subjects, the BACKWARD check before a new version, and the clear refusals (``posrecon run`` exits 2)."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import RegisteredSchema, Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from posrecon.config import SerdeSettings, load_settings
from posrecon.serde.schemas import load_schema_json
from posrecon.serde.wire import SchemaRegistrationError, codec_for, contract_schema, register, registry_client
from serdekit import confluent, confluent_codec

# -- settings ------------------------------------------------------------------------------------------------


def test_serde_table_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[serde]\nformat = "confluent"\nregistry_url = "https://sr:8081"\n'
        '[serde.registry]\n"basic.auth.user.info" = "u:secret"\n'
    )
    serde = load_settings(path, {}).serde
    assert (serde.format, serde.registry_url) == ("confluent", "https://sr:8081")
    assert serde.client_config == {"basic.auth.user.info": "u:secret", "url": "https://sr:8081"}
    assert "secret" not in repr(serde)
    env = {
        "POSRECON_SERDE_FORMAT": "single-object",
        "POSRECON_SERDE_REGISTRY_URL": "mock://x",
        "POSRECON_SERDE_REGISTRY_BASIC_AUTH_CREDENTIALS_SOURCE": "USER_INFO",
        "POSRECON_SERDE_REGISTRY_MAX_RETRIES": "1",
    }
    serde = load_settings(path, env).serde
    assert (serde.format, serde.registry_url) == ("single-object", "mock://x")
    assert serde.registry == {
        "basic.auth.user.info": "u:secret",
        "basic.auth.credentials.source": "USER_INFO",
        "max.retries": 1,
    }
    assert load_settings(None, {}).serde == SerdeSettings()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[serde]\nformat = "protobuf"\n', "serde.format must be one of"),
        ('[serde]\nformat = "confluent"\n', "needs serde.registry_url"),
        ('[serde]\nregistry = "x"\n', "serde.registry must be a table"),
        ('[serde]\nurl = "http://x"\n', "unknown serde key"),
        ('[serde.registry]\nurl = "http://x"\n', "as serde.registry_url"),
    ],
)
def test_bad_serde_settings_are_refused(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=error):
        load_settings(path, {})


# -- registering -------------------------------------------------------------------------------------------------


def test_output_schemas_are_registered_under_topic_name_subjects_once() -> None:
    serde = confluent()
    first = confluent_codec("Alert", serde, "pos.alerts")
    again = confluent_codec("Alert", serde, "pos.alerts")  # a restart, a second worker
    assert first.schema_id == again.schema_id
    client = registry_client(serde)
    assert client.get_subjects() == ["pos.alerts-value"]
    assert client.get_versions("pos.alerts-value") == [1]
    assert json.loads(client.get_schema(first.schema_id).schema_str) == load_schema_json("Alert")  # type: ignore[arg-type]
    assert confluent_codec("Alert", serde).schema_id is None  # readers register nothing
    assert client.get_subjects() == ["pos.alerts-value"]


def test_a_new_compatible_version_is_registered_after_the_previous_one() -> None:
    serde = confluent()
    client = registry_client(serde)
    v1 = client.register_schema(
        "pos.reconciled-value", Schema(json.dumps(load_schema_json("ReconciledOrder", "v1")), "AVRO")
    )
    codec = confluent_codec("ReconciledOrder", serde, "pos.reconciled")
    assert codec.schema_id != v1
    assert sorted(client.get_versions("pos.reconciled-value")) == [1, 2]


def test_an_incompatible_latest_version_refuses_with_subject_and_field() -> None:
    serde = confluent()
    client = registry_client(serde)
    previous = copy.deepcopy(load_schema_json("ReconciledOrder"))
    previous["fields"] = [f for f in previous["fields"] if f["name"] != "merchant_id"]  # ours has no default for it
    client.register_schema("pos.reconciled-value", Schema(json.dumps(previous), "AVRO"))
    with pytest.raises(SchemaRegistrationError) as raised:
        codec_for("ReconciledOrder", serde, "pos.reconciled")
    assert raised.value.subject == "pos.reconciled-value"
    assert "not BACKWARD compatible with its latest version 1" in str(raised.value)
    assert "ReconciledOrder.merchant_id: new field without a default" in str(raised.value)
    assert client.get_versions("pos.reconciled-value") == [1]  # nothing registered


class FakeRegistry:
    """A registry (not the mock) whose latest version is ours minus a field: compatible by our check."""

    def __init__(self, compatible: bool, refuse: bool) -> None:
        self.compatible, self.refuse = compatible, refuse
        self.asked: list[str] = []

    def lookup_schema(self, subject: str, schema: Schema) -> Any:
        raise SchemaRegistryError(404, 40403, "Schema not found")

    def get_latest_version(self, subject: str) -> RegisteredSchema:
        older = load_schema_json("Alert", "v2")
        return RegisteredSchema(
            schema_id=1, guid=None, schema=Schema(json.dumps(older), "AVRO"), subject=subject, version=1
        )

    def test_compatibility(self, subject: str, schema: Schema) -> bool:
        self.asked.append(subject)
        return self.compatible

    def register_schema(self, subject: str, schema: Schema) -> int:
        if self.refuse:
            raise SchemaRegistryError(409, 409, "Schema being registered is incompatible with an earlier schema")
        return 2


def test_the_registrys_own_verdict_and_refusal_are_clear_errors() -> None:
    registry = FakeRegistry(compatible=True, refuse=False)
    assert register(registry, "pos.alerts-value", "Alert") == 2  # type: ignore[arg-type]
    assert registry.asked == ["pos.alerts-value"]
    with pytest.raises(SchemaRegistrationError, match="the registry finds it incompatible with version 1"):
        register(FakeRegistry(compatible=False, refuse=False), "pos.alerts-value", "Alert")  # type: ignore[arg-type]
    with pytest.raises(SchemaRegistrationError, match=r"refused it: .*incompatible with an earlier schema"):
        register(FakeRegistry(compatible=True, refuse=True), "pos.alerts-value", "Alert")  # type: ignore[arg-type]


def test_an_unreachable_registry_refuses_the_start() -> None:
    # the discard port: nothing answers; no retries (the client's own default retries with back-off)
    serde = SerdeSettings(format="confluent", registry_url="http://127.0.0.1:9", registry={"max.retries": 0})
    with pytest.raises(SchemaRegistrationError, match=r"pos\.alerts-value: the registry did not answer"):
        codec_for("Alert", serde, "pos.alerts")


def test_posrecon_run_exits_2_naming_the_subject(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from posrecon.cli import main

    url = f"mock://{uuid.uuid4().hex}"
    previous = copy.deepcopy(load_schema_json("Alert"))
    previous["fields"][0]["type"] = "long"  # alert_id was a long: ours cannot read it
    registry_client(SerdeSettings(registry_url=url)).register_schema(
        "alerts.t-value", Schema(json.dumps(previous), "AVRO")
    )
    config = tmp_path / "c.toml"
    config.write_text(f'[topics]\nalerts = "alerts.t"\n[serde]\nformat = "confluent"\nregistry_url = "{url}"\n')
    code = main(["run", "--config", str(config), "--bootstrap", "127.0.0.1:9", "--max-seconds", "1"])
    assert code == 2
    out = capsys.readouterr().out
    assert "cannot register alerts.t-value" in out and "Alert.alert_id: type changed from long to string" in out
    assert contract_schema("Alert").schema_type == "AVRO"
