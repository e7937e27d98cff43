//! The seeded planner: a reproducible, endless sequence of legal OLTP operations.

use std::{fmt, str::FromStr};

use rand::{Rng, SeedableRng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::model::{
    BookingHandle, BookingStatus, IllegalOperation, LoyaltyTier, Operation, PaymentHandle,
    PaymentStatus, ProfileChange, UserHandle, World,
};

/// Relative weights of the kinds of operation. A kind with nothing to act on (no user yet, no
/// open booking) falls back to a sign-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mix {
    pub sign_up: u32,
    pub edit_profile: u32,
    pub delete_account: u32,
    pub create_booking: u32,
    pub booking_transition: u32,
    pub create_payment: u32,
    pub payment_transition: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            sign_up: 12,
            edit_profile: 10,
            delete_account: 1,
            create_booking: 18,
            booking_transition: 22,
            create_payment: 14,
            payment_transition: 23,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "bad mix `{0}`: expected comma-separated kind=weight with kinds sign_up, edit_profile, delete_account, create_booking, booking_transition, create_payment, payment_transition"
)]
pub struct MixError(String);

impl FromStr for Mix {
    type Err = MixError;

    /// `kind=weight,...`; kinds not named keep their default weight.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut mix = Mix::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, weight) = part.split_once('=').ok_or_else(|| MixError(text.into()))?;
            let weight: u32 = weight.trim().parse().map_err(|_| MixError(text.into()))?;
            let slot = match kind.trim() {
                "sign_up" => &mut mix.sign_up,
                "edit_profile" => &mut mix.edit_profile,
                "delete_account" => &mut mix.delete_account,
                "create_booking" => &mut mix.create_booking,
                "booking_transition" => &mut mix.booking_transition,
                "create_payment" => &mut mix.create_payment,
                "payment_transition" => &mut mix.payment_transition,
                _ => return Err(MixError(text.into())),
            };
            *slot = weight;
        }
        if mix.weights().iter().all(|w| *w == 0) {
            return Err(MixError(text.into()));
        }
        Ok(mix)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sign_up={},edit_profile={},delete_account={},create_booking={},booking_transition={},create_payment={},payment_transition={}",
            self.sign_up,
            self.edit_profile,
            self.delete_account,
            self.create_booking,
            self.booking_transition,
            self.create_payment,
            self.payment_transition
        )
    }
}

impl Mix {
    fn weights(&self) -> [u32; 7] {
        [
            self.sign_up,
            self.edit_profile,
            self.delete_account,
            self.create_booking,
            self.booking_transition,
            self.create_payment,
            self.payment_transition,
        ]
    }
}

/// One planned operation with the user whose data it touches (operations of one user run in
/// plan order; different users' operations may run concurrently).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedOp {
    pub seq: u64,
    pub owner: UserHandle,
    pub op: Operation,
}

/// How many random picks to try before giving up on a kind for this step.
const PICK_ATTEMPTS: usize = 8;

pub struct Planner {
    rng: ChaCha8Rng,
    mix: Mix,
    world: World,
    /// Emails must be unique across runs on one database; the tag keeps runs apart.
    email_tag: String,
    seq: u64,
    live_users: Vec<UserHandle>,
    open_bookings: Vec<BookingHandle>,
    open_payments: Vec<PaymentHandle>,
    booking_totals: Vec<i64>,
}

const FIRST_NAMES: &[&str] = &[
    "Linh", "Minh", "Anh", "Huong", "Tuan", "Mai", "Duc", "Lan", "Quang", "Thao", "Hieu", "Trang",
    "Emma", "Lucas", "Sofia", "Kenji",
];
const LAST_NAMES: &[&str] = &[
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ",
    "Smith", "Müller", "Tanaka",
];
const COUNTRIES: &[&str] = &[
    "VN", "VN", "VN", "VN", "VN", "VN", "US", "KR", "JP", "FR", "DE", "AU", "SG",
];
const DESTINATIONS: &[(&str, &[&str])] = &[
    (
        "Ha Noi",
        &[
            "Sofitel Legend Metropole",
            "Hanoi La Siesta",
            "Apricot Hotel",
        ],
    ),
    (
        "Ho Chi Minh",
        &["Park Hyatt Saigon", "Hotel des Arts", "Liberty Central"],
    ),
    (
        "Da Nang",
        &["Furama Resort", "InterContinental Danang", "Fusion Maia"],
    ),
    ("Hoi An", &["Anantara Hoi An", "Almanity Hoi An"]),
    ("Nha Trang", &["Vinpearl Resort", "Amiana Resort"]),
    ("Phu Quoc", &["JW Marriott Phu Quoc", "Salinda Resort"]),
    ("Da Lat", &["Ana Mandara Villas", "Dalat Palace"]),
    ("Ha Long", &["Paradise Suites", "Wyndham Legend Halong"]),
    ("Can Tho", &["Victoria Can Tho"]),
    ("Hai Phong", &["Manoir des Arts"]),
];
const METHODS: &[&str] = &[
    "card",
    "card",
    "card",
    "e_wallet",
    "e_wallet",
    "bank_transfer",
    "cash",
];
const LANGS: &[&str] = &["vi", "en", "ko", "ja", "fr"];

impl Planner {
    pub fn new(seed: u64, mix: Mix, email_tag: &str) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            mix,
            world: World::default(),
            email_tag: email_tag.to_string(),
            seq: 0,
            live_users: Vec::new(),
            open_bookings: Vec::new(),
            open_payments: Vec::new(),
            booking_totals: Vec::new(),
        }
    }

    /// The next operation; the world already reflects it.
    pub fn next_op(&mut self) -> Result<PlannedOp, IllegalOperation> {
        let weights = self.mix.weights();
        let total: u32 = weights.iter().sum();
        let mut pick = self.rng.random_range(0..total.max(1));
        let mut kind = 0;
        for (index, weight) in weights.iter().enumerate() {
            if pick < *weight {
                kind = index;
                break;
            }
            pick -= weight;
        }
        let op = match kind {
            1 => self.edit_profile(),
            2 => self.delete_account(),
            3 => self.create_booking(),
            4 => self.booking_transition(),
            5 => self.create_payment(),
            6 => self.payment_transition(),
            _ => None,
        }
        .unwrap_or_else(|| self.sign_up());
        let owner = self.world.owner(&op);
        self.world.apply(&op)?;
        self.track(&op);
        let planned = PlannedOp {
            seq: self.seq,
            owner,
            op,
        };
        self.seq += 1;
        Ok(planned)
    }

    /// Keeps the candidate lists in step with the world so picks stay cheap.
    fn track(&mut self, op: &Operation) {
        match op {
            Operation::SignUp { user, .. } => self.live_users.push(*user),
            Operation::DeleteAccount { user } => {
                let world = &self.world;
                self.live_users.retain(|u| u != user);
                self.open_bookings
                    .retain(|b| world.bookings[*b as usize].alive);
                self.open_payments
                    .retain(|p| world.payments[*p as usize].alive);
            }
            Operation::CreateBooking {
                booking,
                total_cents,
                ..
            } => {
                self.open_bookings.push(*booking);
                self.booking_totals.push(*total_cents);
            }
            Operation::BookingTransition { booking, to, .. } if to.is_terminal() => {
                self.open_bookings.retain(|b| b != booking);
            }
            Operation::CreatePayment { payment, .. } => self.open_payments.push(*payment),
            Operation::PaymentTransition { payment, to, .. } if to.is_terminal() => {
                self.open_payments.retain(|p| p != payment);
            }
            _ => {}
        }
    }

    fn sign_up(&mut self) -> Operation {
        let user = self.world.users.len() as UserHandle;
        let first = *FIRST_NAMES.choose(&mut self.rng).unwrap_or(&"An");
        let last = *LAST_NAMES.choose(&mut self.rng).unwrap_or(&"Nguyễn");
        let email = format!(
            "{}.{}{}@{}",
            ascii_lower(first),
            user,
            self.email_tag,
            ["gmail.com", "yahoo.com", "outlook.com", "example.vn"][self.rng.random_range(0..4)]
        );
        let phone = self.rng.random_bool(0.8).then(|| self.phone());
        let lang = *LANGS.choose(&mut self.rng).unwrap_or(&"vi");
        Operation::SignUp {
            user,
            email,
            full_name: format!("{first} {last}"),
            phone,
            country_code: COUNTRIES.choose(&mut self.rng).unwrap_or(&"VN"),
            preferences: serde_json::json!({
                "lang": lang,
                "newsletter": self.rng.random_bool(0.4),
                "currency": if lang == "vi" { "VND" } else { "USD" },
            })
            .to_string(),
        }
    }

    fn phone(&mut self) -> String {
        format!(
            "+84 9{} {:03} {:04}",
            self.rng.random_range(0..10),
            self.rng.random_range(0..1000),
            self.rng.random_range(0..10000)
        )
    }

    fn edit_profile(&mut self) -> Option<Operation> {
        let user = *self.live_users.choose(&mut self.rng)?;
        let change = match self.rng.random_range(0..10) {
            0..=2 => ProfileChange::Phone(self.rng.random_bool(0.9).then(|| self.phone())),
            3..=4 => ProfileChange::LoyaltyTier(*LoyaltyTier::ALL.choose(&mut self.rng)?),
            5..=7 => ProfileChange::Preferences(
                serde_json::json!({
                    "lang": LANGS.choose(&mut self.rng)?,
                    "newsletter": self.rng.random_bool(0.5),
                    "favourite_destination": DESTINATIONS.choose(&mut self.rng)?.0,
                })
                .to_string(),
            ),
            8 => ProfileChange::FullName(format!(
                "{} {}",
                FIRST_NAMES.choose(&mut self.rng)?,
                LAST_NAMES.choose(&mut self.rng)?
            )),
            _ => ProfileChange::Active(self.rng.random_bool(0.7)),
        };
        Some(Operation::EditProfile { user, change })
    }

    fn delete_account(&mut self) -> Option<Operation> {
        let user = *self.live_users.choose(&mut self.rng)?;
        Some(Operation::DeleteAccount { user })
    }

    fn create_booking(&mut self) -> Option<Operation> {
        let user = *self.live_users.choose(&mut self.rng)?;
        let (destination, hotels) = *DESTINATIONS.choose(&mut self.rng)?;
        let hotel_name = self
            .rng
            .random_bool(0.9)
            .then(|| hotels.choose(&mut self.rng))
            .flatten()
            .copied();
        let nights = self.rng.random_range(1..=10u16);
        let guests = self.rng.random_range(1..=6i16);
        // Nightly rates of 600k–6M VND, in whole thousands, sometimes with a half-unit fee.
        let nightly = self.rng.random_range(600..=6000i64) * 1000;
        let fee_cents = if self.rng.random_bool(0.2) { 50 } else { 0 };
        Some(Operation::CreateBooking {
            booking: self.world.bookings.len() as BookingHandle,
            user,
            destination,
            hotel_name,
            check_in_in_days: self.rng.random_range(1..=180),
            nights,
            guests,
            total_cents: nightly * i64::from(nights) * 100 + fee_cents,
            currency: "VND",
            details: serde_json::json!({
                "room_type": (["standard", "deluxe", "suite", "family"][self.rng.random_range(0..4)]),
                "breakfast": self.rng.random_bool(0.6),
                "channel": (["mobile", "web", "partner"][self.rng.random_range(0..3)]),
            })
            .to_string(),
        })
    }

    fn booking_transition(&mut self) -> Option<Operation> {
        for _ in 0..PICK_ATTEMPTS {
            let booking = *self.open_bookings.choose(&mut self.rng)?;
            let state = &self.world.bookings[booking as usize];
            let allowed: Vec<BookingStatus> = state
                .status
                .successors()
                .iter()
                .copied()
                .filter(|to| self.world.booking_transition_allowed(state, *to))
                .collect();
            // Cancellation is the rarer path: most bookings go ahead.
            let to = match allowed.as_slice() {
                [] => continue,
                [only] => *only,
                several => {
                    let go_ahead: Vec<_> = several
                        .iter()
                        .filter(|s| **s != BookingStatus::Cancelled)
                        .collect();
                    if self.rng.random_bool(0.15) || go_ahead.is_empty() {
                        BookingStatus::Cancelled
                    } else {
                        **go_ahead.choose(&mut self.rng)?
                    }
                }
            };
            return Some(Operation::BookingTransition {
                booking,
                from: state.status,
                to,
            });
        }
        None
    }

    fn create_payment(&mut self) -> Option<Operation> {
        for _ in 0..PICK_ATTEMPTS {
            let booking = *self.open_bookings.choose(&mut self.rng)?;
            if !self
                .world
                .payment_allowed(&self.world.bookings[booking as usize])
            {
                continue;
            }
            let method = *METHODS.choose(&mut self.rng)?;
            let card_last4 =
                (method == "card").then(|| format!("{:04}", self.rng.random_range(0..10000)));
            return Some(Operation::CreatePayment {
                payment: self.world.payments.len() as PaymentHandle,
                booking,
                amount_cents: self.booking_total(booking)?,
                currency: "VND",
                method,
                card_last4,
            });
        }
        None
    }

    /// The amount the booking was created with (payments charge it in full).
    fn booking_total(&self, booking: BookingHandle) -> Option<i64> {
        self.booking_totals
            .get(booking as usize)
            .copied()
            .filter(|total| *total > 0)
    }

    fn payment_transition(&mut self) -> Option<Operation> {
        for _ in 0..PICK_ATTEMPTS {
            let payment = *self.open_payments.choose(&mut self.rng)?;
            let state = &self.world.payments[payment as usize];
            let allowed: Vec<PaymentStatus> = state
                .status
                .successors()
                .iter()
                .copied()
                .filter(|to| self.world.payment_transition_allowed(state, *to))
                .collect();
            if allowed.is_empty() {
                continue;
            }
            // Failures are the exception.
            let to = if allowed.len() > 1 && allowed.contains(&PaymentStatus::Failed) {
                if self.rng.random_bool(0.08) {
                    PaymentStatus::Failed
                } else {
                    allowed[0]
                }
            } else {
                *allowed.choose(&mut self.rng)?
            };
            let provider_ref = (to == PaymentStatus::Authorized)
                .then(|| format!("psp_{:016x}", self.rng.random::<u64>()));
            return Some(Operation::PaymentTransition {
                payment,
                from: state.status,
                to,
                provider_ref,
            });
        }
        None
    }
}

fn ascii_lower(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase()
}
