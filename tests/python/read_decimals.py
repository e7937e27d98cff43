"""Reads topic_cdc_changes with an independent client (confluent-kafka's Consumer and
AvroDeserializer, schemas fetched from the registry) and prints, for each record with
after_values, one JSON line saying which Python type and value every column decoded to:

  {"id": ..., "table": ..., "operation": ..., "commit_lsn": ..., "change_id": ...,
   "columns": {name: {"python_type": ..., "value": ..., ...}}}

Decimal: "value" is str(v), "plain" is format(v, "f") (str writes 0E-9 for 0.000000000).
float: "value" is repr(v) (-0.0, nan, inf survive), "is_nan" says NaN explicitly.
dict: "value" is the dict, bytes as hex; a VariableDecimal ({"scale", "value"}) also has
"decimal", its exact value as fixed-point text with `scale` fraction digits.

usage: read_decimals.py BROKERS REGISTRY_URL COUNT TIMEOUT_SECONDS
Exits non-zero, saying why, if fewer than COUNT records arrive or one does not decode.
"""

import decimal
import json
import math
import sys

from cdc_topic import decoded_records


def plain(value):
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def column(value):
    described = {"python_type": type(value).__name__}
    if isinstance(value, decimal.Decimal):
        described["value"] = str(value)
        described["plain"] = format(value, "f")
    elif isinstance(value, float):
        described["value"] = repr(value)
        described["is_nan"] = math.isnan(value)
    elif isinstance(value, str):
        described["value"] = value
    elif isinstance(value, dict):
        described["value"] = plain(value)
        if set(value) == {"scale", "value"} and isinstance(value["value"], bytes):
            unscaled = int.from_bytes(value["value"], "big", signed=True)
            # Built from text, so exact: Decimal.scaleb would round to the context's 28 digits.
            exact = decimal.Decimal(f"{unscaled}E-{value['scale']}")
            described["decimal"] = format(exact, "f")
    else:
        described["value"] = plain(value)
    return described


def main():
    brokers, registry_url, count, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    for _, value in decoded_records(brokers, registry_url, count, timeout):
        after = value.get("after_values")
        if after is None:
            continue
        print(json.dumps({
            "id": after.get("id"),
            "table": value["table_name"],
            "operation": value["operation"],
            "commit_lsn": value["source"]["commit_lsn"],
            "change_id": value["change_id"],
            "columns": {name: column(v) for name, v in after.items()},
        }, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
