//! The closed sets of the events (sources, device types, interactions, log levels, external
//! sources), each defined once with both spellings: the lowercase JSON text the gateway accepts
//! and the uppercase Avro symbol the schemas declare. They live apart from the records so that
//! the one macro keeping the two spellings in step is the only place a symbol is written.

/// Defines a closed set of symbols: the JSON spelling (lowercase, what the gateway accepts) and
/// the Avro symbol (uppercase, what the schema declares), serde names and the OpenAPI enum.
///
/// Every JSON text is the snake_case of its variant: utoipa does not see a `rename` whose
/// literal comes through a macro fragment, so the container's `rename_all` names the values in
/// the OpenAPI document; the gateway's tests check both agree.
macro_rules! symbols {
    ($(#[$meta:meta])* $name:ident {
        $($variant:ident = $text:literal / $symbol:literal),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Deserialize, serde::Serialize,
        )]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            /// The Avro symbols, in declaration order.
            pub const SYMBOLS: &'static [&'static str] = &[$($symbol),+];
            /// The name of the Avro enum in the schemas.
            pub const AVRO_NAME: &'static str = stringify!($name);

            /// The JSON spelling (lowercase).
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// The Avro symbol (uppercase).
            pub fn symbol(self) -> &'static str {
                match self { $(Self::$variant => $symbol),+ }
            }

            /// The value whose Avro symbol is `symbol`.
            pub fn from_symbol(symbol: &str) -> Option<Self> {
                match symbol { $($symbol => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

symbols!(
    /// Where an app event comes from.
    EventSource {
        MobileApp = "mobile_app" / "MOBILE_APP",
        WebApp = "web_app" / "WEB_APP",
        BookingSystem = "booking_system" / "BOOKING_SYSTEM",
    }
);

symbols!(
    /// The kind of device.
    DeviceType {
        Ios = "ios" / "IOS",
        Android = "android" / "ANDROID",
        Desktop = "desktop" / "DESKTOP",
        Tablet = "tablet" / "TABLET",
        MobileWeb = "mobile_web" / "MOBILE_WEB",
        Server = "server" / "SERVER",
    }
);

symbols!(
    /// A low-level interaction on a page or screen.
    Interaction {
        Click = "click" / "CLICK",
        Tap = "tap" / "TAP",
        Scroll = "scroll" / "SCROLL",
        Hover = "hover" / "HOVER",
        View = "view" / "VIEW",
        Input = "input" / "INPUT",
    }
);

symbols!(
    /// Severity of a log line.
    LogLevel {
        Debug = "debug" / "DEBUG",
        Info = "info" / "INFO",
        Warn = "warn" / "WARN",
        Error = "error" / "ERROR",
        Fatal = "fatal" / "FATAL",
    }
);

symbols!(
    /// Where an external-data record comes from.
    ExternalSource {
        Weather = "weather" / "WEATHER",
        Maps = "maps" / "MAPS",
        SocialMedia = "social_media" / "SOCIAL_MEDIA",
        MarketData = "market_data" / "MARKET_DATA",
        News = "news" / "NEWS",
        TravelTrends = "travel_trends" / "TRAVEL_TRENDS",
        Other = "other" / "OTHER",
    }
);
