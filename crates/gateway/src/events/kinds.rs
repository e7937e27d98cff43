//! The [`Event`] implementation of each accepted kind: which checks its fields get and how it
//! becomes a record of the shared model (`platform::events`) with its Kafka key. Kept apart
//! from the JSON shapes, which are what the OpenAPI document is generated from.

use platform::events::{self as model, EventSource};

use super::{
    AppType, BookingEvent, ClickstreamEvent, Event, EventKind, ExternalEvent, LogEvent, Prepared,
    Rules, UserEvent,
    checks::{
        MAX_ID_CHARS, MAX_TEXT_CHARS, check_length, check_map, check_optional, check_text,
        check_time, path,
    },
};
use crate::errors::FieldError;

impl Event for UserEvent {
    const KIND: EventKind = EventKind::User;

    fn check(&self, rules: &Rules, at: &str, errors: &mut Vec<FieldError>) {
        check_text(errors, at, "event_id", &self.event_id, MAX_ID_CHARS);
        check_optional(errors, at, "user_id", &self.user_id, MAX_ID_CHARS);
        check_text(errors, at, "session_id", &self.session_id, MAX_ID_CHARS);
        check_optional(errors, at, "booking_id", &self.booking_id, MAX_ID_CHARS);
        check_time(errors, rules, at, "timestamp", self.timestamp);
        if let Some(device) = &self.device {
            // Dotted field names: the nested path is spelled out only for an error.
            let os = &device.os_version;
            check_optional(errors, at, "device.os_version", os, MAX_ID_CHARS);
            let app = &device.app_version;
            check_optional(errors, at, "device.app_version", app, MAX_ID_CHARS);
            let agent = &device.user_agent;
            check_optional(errors, at, "device.user_agent", agent, MAX_TEXT_CHARS);
        }
        check_map(errors, at, "properties", &self.properties);
    }

    fn prepare(self, received_at: i64) -> Prepared {
        let source = match self.app_type {
            AppType::Mobile => EventSource::MobileApp,
            AppType::Web => EventSource::WebApp,
        };
        Prepared {
            topic: Self::KIND.topic(),
            id: self.event_id.clone(),
            // One session's events stay in order.
            key: self.session_id.clone(),
            event_type: self.event_type.as_str(),
            record: model::Event::App(model::AppEvent {
                event_id: self.event_id,
                event_type: self.event_type.as_str().into(),
                source,
                user_id: self.user_id,
                session_id: Some(self.session_id),
                booking_id: self.booking_id,
                device: self.device,
                timestamp_ms: self.timestamp.0,
                properties: self.properties,
            }),
            received_at_millis: received_at,
        }
    }
}

impl Event for BookingEvent {
    const KIND: EventKind = EventKind::Booking;

    fn check(&self, rules: &Rules, at: &str, errors: &mut Vec<FieldError>) {
        check_text(errors, at, "event_id", &self.event_id, MAX_ID_CHARS);
        check_text(errors, at, "booking_id", &self.booking_id, MAX_ID_CHARS);
        check_optional(errors, at, "user_id", &self.user_id, MAX_ID_CHARS);
        check_time(errors, rules, at, "timestamp", self.timestamp);
        check_map(errors, at, "properties", &self.properties);
    }

    fn prepare(self, received_at: i64) -> Prepared {
        Prepared {
            topic: Self::KIND.topic(),
            id: self.event_id.clone(),
            // One booking's events stay in order.
            key: self.booking_id.clone(),
            event_type: self.event_type.as_str(),
            record: model::Event::App(model::AppEvent {
                event_id: self.event_id,
                event_type: self.event_type.as_str().into(),
                source: EventSource::BookingSystem,
                user_id: self.user_id,
                session_id: None,
                booking_id: Some(self.booking_id),
                device: None,
                timestamp_ms: self.timestamp.0,
                properties: self.properties,
            }),
            received_at_millis: received_at,
        }
    }
}

impl Event for ClickstreamEvent {
    const KIND: EventKind = EventKind::Clickstream;

    fn check(&self, rules: &Rules, at: &str, errors: &mut Vec<FieldError>) {
        check_text(errors, at, "event_id", &self.event_id, MAX_ID_CHARS);
        check_text(errors, at, "session_id", &self.session_id, MAX_ID_CHARS);
        check_optional(errors, at, "user_id", &self.user_id, MAX_ID_CHARS);
        check_text(errors, at, "page_url", &self.page_url, MAX_TEXT_CHARS);
        check_optional(errors, at, "element_id", &self.element_id, MAX_TEXT_CHARS);
        check_optional(errors, at, "referrer", &self.referrer, MAX_TEXT_CHARS);
        for (field, size) in [
            ("viewport_width", self.viewport_width),
            ("viewport_height", self.viewport_height),
        ] {
            if let Some(size) = size.filter(|s| *s < 1) {
                errors.push(FieldError::new(
                    path(at, field),
                    "a positive number of pixels",
                    size.to_string(),
                ));
            }
        }
        check_time(errors, rules, at, "timestamp", self.timestamp);
    }

    fn prepare(self, received_at: i64) -> Prepared {
        Prepared {
            topic: Self::KIND.topic(),
            id: self.event_id.clone(),
            key: self.session_id.clone(),
            event_type: self.interaction.as_str(),
            record: model::Event::Click(model::ClickEvent {
                event_id: self.event_id,
                session_id: self.session_id,
                user_id: self.user_id,
                interaction: self.interaction,
                page_url: self.page_url,
                element_id: self.element_id,
                x: self.x,
                y: self.y,
                viewport_width: self.viewport_width,
                viewport_height: self.viewport_height,
                device_type: self.device_type,
                referrer: self.referrer,
                timestamp_ms: self.timestamp.0,
            }),
            received_at_millis: received_at,
        }
    }
}

impl Event for LogEvent {
    const KIND: EventKind = EventKind::Log;

    fn check(&self, rules: &Rules, at: &str, errors: &mut Vec<FieldError>) {
        check_text(errors, at, "log_id", &self.log_id, MAX_ID_CHARS);
        check_text(errors, at, "service", &self.service, MAX_ID_CHARS);
        if self.message.is_empty() {
            errors.push(FieldError::new(
                path(at, "message"),
                "a non-empty string",
                "\"\"",
            ));
        }
        for (field, value) in [
            ("logger", &self.logger),
            ("host", &self.host),
            ("trace_id", &self.trace_id),
            ("request_id", &self.request_id),
            ("user_id", &self.user_id),
            ("session_id", &self.session_id),
            ("booking_id", &self.booking_id),
        ] {
            check_optional(errors, at, field, value, MAX_TEXT_CHARS);
        }
        check_map(errors, at, "attributes", &self.attributes);
        check_time(errors, rules, at, "timestamp", self.timestamp);
    }

    fn prepare(self, received_at: i64) -> Prepared {
        Prepared {
            topic: Self::KIND.topic(),
            id: self.log_id.clone(),
            // One service's lines stay in order.
            key: self.service.clone(),
            event_type: self.level.as_str(),
            record: model::Event::Log(model::LogEvent {
                log_id: self.log_id,
                service: self.service,
                level: self.level,
                message: self.message,
                logger: self.logger,
                host: self.host,
                trace_id: self.trace_id,
                request_id: self.request_id,
                user_id: self.user_id,
                session_id: self.session_id,
                booking_id: self.booking_id,
                attributes: self.attributes,
                timestamp_ms: self.timestamp.0,
            }),
            received_at_millis: received_at,
        }
    }
}

impl Event for ExternalEvent {
    const KIND: EventKind = EventKind::External;

    fn check(&self, rules: &Rules, at: &str, errors: &mut Vec<FieldError>) {
        check_text(errors, at, "record_id", &self.record_id, MAX_ID_CHARS);
        check_text(errors, at, "pipeline", &self.pipeline, MAX_ID_CHARS);
        check_optional(errors, at, "location", &self.location, MAX_ID_CHARS);
        check_time(errors, rules, at, "observed_at", self.observed_at);
        check_time(errors, rules, at, "fetched_at", self.fetched_at);
        for (index, warning) in self.quality_warnings.iter().enumerate() {
            check_length(
                errors,
                at,
                &format!("quality_warnings[{index}]"),
                warning,
                MAX_TEXT_CHARS,
            );
        }
    }

    fn prepare(self, received_at: i64) -> Prepared {
        let payload_json = serde_json::Value::Object(self.payload).to_string();
        Prepared {
            topic: Self::KIND.topic(),
            id: self.record_id.clone(),
            key: self.pipeline.clone(),
            event_type: self.source_type.as_str(),
            record: model::Event::External(model::ExternalRecord {
                record_id: self.record_id,
                source_type: self.source_type,
                pipeline: self.pipeline,
                location: self.location,
                observed_at_ms: self.observed_at.0,
                fetched_at_ms: self.fetched_at.0,
                payload_json,
                quality_warnings: self.quality_warnings,
            }),
            received_at_millis: received_at,
        }
    }
}
