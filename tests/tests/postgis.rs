//! PostGIS `geometry` and `geography` arrive as the `Geometry` branch: the WKB without the SRID
//! and the SRID, compared with what PostGIS returns for the same row (`ST_AsEWKB` of the value
//! with SRID 0, `ST_SRID`), on every path: snapshot, stream and re-snapshot. The extension comes from Debian's
//! `postgresql-15-postgis-3` (scripts/install-deps.sh installs it); without it the test says it
//! is skipped, except under CI, where it fails.

use std::time::Duration;

use e2e::{CdcRecord, cdc_records, stack_without_connector};
use serde_json::{Value, json};

const SETUP: &str = r#"
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE TABLE places (
    id    integer PRIMARY KEY,
    shape geometry,
    spot  geography
);
ALTER PUBLICATION cdc_publication ADD TABLE places;
"#;

/// (shape, spot) for rows 1..: with and without SRID, 3D, empty, NULL.
const VALUES: &[(&str, &str)] = &[
    ("'SRID=4326;POINT(1 2)'", "'SRID=4326;POINT(1 2)'"),
    ("'LINESTRING(0 0,1 1,2 0.5)'", "'POINT(105.85 21.03)'"),
    ("'SRID=3857;POINT Z (1 2 3)'", "NULL"),
    ("'POINT EMPTY'", "'SRID=4326;LINESTRING(0 0,1 1)'"),
    (
        "'SRID=4326;MULTIPOLYGON(((0 0,1 0,1 1,0 0)),((2 2,3 2,3 3,2 2)))'",
        "NULL",
    ),
    ("NULL", "NULL"),
];

fn insert(offset: usize) -> String {
    VALUES
        .iter()
        .enumerate()
        .map(|(index, (shape, spot))| {
            format!(
                "INSERT INTO places VALUES ({}, {shape}, {spot});",
                offset + index + 1
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn geometries_arrive_as_wkb_and_srid() {
    let mut stack = stack_without_connector("postgis").await;
    let available = stack
        .psql("SELECT count(*) FROM pg_available_extensions WHERE name = 'postgis'")
        .await
        .expect("list extensions");
    if available.trim() != "1" {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostGIS is missing: scripts/install-deps.sh installs postgresql-15-postgis-3"
        );
        eprintln!("SKIPPED: PostGIS is not installed (apt-get install postgresql-15-postgis-3)");
        return;
    }
    stack.psql(SETUP).await.expect("create places");
    stack
        .psql(&insert(0))
        .await
        .expect("rows before the connector");
    stack.start_connector().await.expect("start the connector");
    stack
        .psql(&insert(100))
        .await
        .expect("rows while streaming");
    stack
        .psql(
            r#"SELECT pg_logical_emit_message(true, 'cdc_connector.signal', '{"type": "execute-snapshot", "tables": ["public.places"]}')"#,
        )
        .await
        .expect("request a re-snapshot");
    // Snapshot READs, stream INSERTs, re-snapshot READs of both.
    let rows = 4 * VALUES.len();
    let records = cdc_records(&stack, Duration::from_secs(60), |records| {
        records
            .iter()
            .filter(|r| r.table() == "public.places")
            .count()
            >= rows
    })
    .await;
    let places: Vec<&CdcRecord> = records
        .iter()
        .filter(|r| r.table() == "public.places")
        .collect();
    assert_eq!(places.len(), rows);
    let reads = places.iter().filter(|r| r.operation() == "READ").count();
    assert_eq!(
        reads,
        3 * VALUES.len(),
        "the snapshot's and the re-snapshot's rows"
    );
    for record in places {
        let id = &record.value["after_values"]["id"];
        for (column, type_name, as_geometry) in [
            ("shape", "geometry", "shape"),
            ("spot", "geography", "spot::geometry"),
        ] {
            let expected = stack
                .psql(&format!(
                    "SELECT CASE WHEN {column} IS NULL THEN NULL ELSE json_build_object( \
                       'type_name', '{type_name}', \
                       'wkb', encode(ST_AsEWKB(ST_SetSRID({as_geometry}, 0)), 'hex'), \
                       'srid', NULLIF(ST_SRID({column}), 0)) END \
                     FROM places WHERE id = {id}"
                ))
                .await
                .expect("PostGIS's view of the row");
            let expected: Value = match expected.trim() {
                "" => Value::Null,
                text => serde_json::from_str(text).expect("JSON"),
            };
            let actual = &record.value["after_values"][column];
            assert_eq!(
                actual,
                &expected,
                "row {id}, {column} ({})",
                record.operation()
            );
        }
    }
    // Not vacuous: a 2D point with its SRID is plain OGC WKB.
    let point = records
        .iter()
        .find(|r| r.value["after_values"]["id"] == json!(101))
        .expect("row 101");
    assert_eq!(
        point.value["after_values"]["shape"],
        json!({"type_name": "geometry", "wkb": "0101000000000000000000f03f0000000000000040", "srid": 4326})
    );
    stack.shutdown().await.unwrap();
}
