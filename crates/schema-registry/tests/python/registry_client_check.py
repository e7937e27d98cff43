"""Drives the schema registry at argv[1] with Confluent's Python client (confluent-kafka).

Exits non-zero with a message on the first mismatch, so the Rust test that runs it can
report exactly what a real Confluent client disagreed with.
"""

import json
import sys

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

TOPIC = "people"
SUBJECT = "people-value"


def person_schema(extra_fields):
    fields = [{"name": "id", "type": "long"}, {"name": "name", "type": "string"}]
    return json.dumps(
        {"type": "record", "name": "Person", "namespace": "check", "fields": fields + extra_fields}
    )


V1 = person_schema([])
WITH_DEFAULTED_FIELD = person_schema([{"name": "email", "type": "string", "default": ""}])
WITH_REQUIRED_FIELD = person_schema([{"name": "email", "type": "string"}])


def expect(condition, message):
    if not condition:
        sys.exit(f"registry client check failed: {message}")


def expect_registry_error(call, http_status, error_code, what):
    try:
        call()
    except SchemaRegistryError as error:
        expect(
            (error.http_status_code, error.error_code) == (http_status, error_code),
            f"{what}: expected HTTP {http_status} / {error_code}, got "
            f"{error.http_status_code} / {error.error_code}: {error.error_message}",
        )
        return
    sys.exit(f"registry client check failed: {what}: no error raised")


def main(url):
    client = SchemaRegistryClient({"url": url})
    context = SerializationContext(TOPIC, MessageField.VALUE)

    serializer = AvroSerializer(client, V1, conf={"auto.register.schemas": True})
    person = {"id": 7, "name": "Ada"}
    payload = serializer(person, context)
    expect(payload[0] == 0, f"payload does not start with the magic byte: {payload!r}")
    schema_id = int.from_bytes(payload[1:5], "big")
    expect(schema_id == 1, f"first schema got id {schema_id}, expected 1")

    decoded = AvroDeserializer(client)(payload, context)
    expect(decoded == person, f"decoded {decoded!r}, expected {person!r}")

    latest = client.get_latest_version(SUBJECT)
    expect(latest.schema_id == schema_id, f"latest version has id {latest.schema_id}")
    expect(latest.version == 1, f"latest version is {latest.version}")
    expect(latest.subject == SUBJECT, f"latest version names subject {latest.subject}")
    expect(
        json.loads(latest.schema.schema_str) == json.loads(V1),
        f"latest schema differs: {latest.schema.schema_str}",
    )
    fetched = client.get_schema(schema_id)
    expect(json.loads(fetched.schema_str) == json.loads(V1), f"schema by id differs: {fetched.schema_str}")

    subjects = client.get_subjects()
    expect(subjects == [SUBJECT], f"subjects are {subjects}")

    answer = client.set_compatibility(SUBJECT, "FULL")
    expect(answer == {"compatibility": "FULL"}, f"set_compatibility answered {answer}")
    level = client.get_compatibility(SUBJECT)
    expect(level == "FULL", f"subject compatibility reads back as {level}")

    compatible = client.test_compatibility(SUBJECT, Schema(WITH_DEFAULTED_FIELD, "AVRO"))
    expect(compatible is True, "a field with a default should be FULL-compatible")
    compatible = client.test_compatibility(SUBJECT, Schema(WITH_REQUIRED_FIELD, "AVRO"))
    expect(compatible is False, "a field without a default should not be FULL-compatible")

    expect_registry_error(
        lambda: client.register_schema(SUBJECT, Schema(WITH_REQUIRED_FIELD, "AVRO")),
        409,
        409,
        "registering an incompatible schema",
    )
    expect_registry_error(
        lambda: client.register_schema("broken-value", Schema('{"type": "recrod"}', "AVRO")),
        422,
        42201,
        "registering an invalid schema",
    )
    expect_registry_error(
        lambda: client.get_latest_version("nobody-value"),
        404,
        40401,
        "reading a missing subject",
    )

    evolved_id = client.register_schema(SUBJECT, Schema(WITH_DEFAULTED_FIELD, "AVRO"))
    expect(evolved_id == 2, f"evolved schema got id {evolved_id}, expected 2")
    versions = client.get_versions(SUBJECT)
    expect(versions == [1, 2], f"versions are {versions}")

    print("registry client check passed")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: registry_client_check.py SCHEMA_REGISTRY_URL")
    main(sys.argv[1])
