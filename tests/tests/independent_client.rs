//! An independent client — Python confluent-kafka's AvroDeserializer with the schema from our
//! registry — decodes the connector's records to the same values.

use std::time::Duration;

use e2e::{cdc_records, python_reader_lines};
use local_stack::{Stack, StackOptions};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn confluent_kafka_avro_deserializer_decodes_cdc_records() {
    let mut options = StackOptions::for_tests("python-client");
    options.start_connector = true;
    let stack = Stack::start(options).await.expect("start the stack");
    for sql in [
        "INSERT INTO users (email, full_name, preferences) VALUES ('mai@example.vn', 'Mai Phạm', '{\"seat\": \"aisle\"}')",
        "INSERT INTO bookings (user_id, destination, check_in_date, check_out_date, total_amount) VALUES (1, 'Hoi An', '2027-01-02', '2027-01-05', 3999999.99)",
        "UPDATE bookings SET status = 'cancelled' WHERE booking_id = 1",
        "DELETE FROM bookings WHERE booking_id = 1",
    ] {
        stack
            .psql(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let ours = cdc_records(&stack, Duration::from_secs(60), |r| r.len() >= 4).await;

    let theirs = python_reader_lines(&stack, "read_cdc.py", 4, 60).await;
    assert_eq!(theirs.len(), 4);

    for record in &ours {
        let decoded = theirs
            .iter()
            .find(|t| t["value"]["change_id"] == record.change_id())
            .unwrap_or_else(|| panic!("Python did not see {}", record.change_id()));
        assert_eq!(decoded["key"], record.key);
        let value = &decoded["value"];
        assert_eq!(value["table_name"], record.table());
        assert_eq!(value["operation"], record.operation());
        assert_eq!(value["primary_key"], record.value["primary_key"]);
        assert_eq!(
            value["source"]["commit_lsn"],
            record.value["source"]["commit_lsn"]
        );
    }
    let insert = theirs
        .iter()
        .find(|t| {
            t["value"]["table_name"] == "public.bookings" && t["value"]["operation"] == "INSERT"
        })
        .expect("the booking INSERT");
    let after = &insert["value"]["after_values"];
    assert_eq!(after["total_amount"], json!({"value": "3999999.99"}));
    assert_eq!(
        after["check_in_date"],
        json!({"days": "2027-01-02"}),
        "Avro date logical type"
    );
    assert_eq!(after["destination"], "Hoi An");
    assert_eq!(after["hotel_name"], Value::Null);
    let delete = theirs
        .iter()
        .find(|t| t["value"]["operation"] == "DELETE")
        .expect("the booking DELETE");
    assert_eq!(
        delete["value"]["before_values"]["status"],
        json!({"reason": "NOT_IN_REPLICA_IDENTITY"})
    );
    assert_eq!(delete["value"]["after_values"], Value::Null);
    stack.shutdown().await.unwrap();
}
