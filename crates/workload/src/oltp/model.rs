//! The booking domain as pure state machines: which status may follow which, and which
//! operation is legal in a given world. No I/O here, so the rules can be checked exhaustively.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    Pending,
    Confirmed,
    CheckedIn,
    Completed,
    Cancelled,
}

impl BookingStatus {
    /// The `booking_status` enum label in PostgreSQL.
    pub fn as_sql(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::CheckedIn => "checked_in",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Statuses reachable in one step, ignoring what the booking's payments allow.
    pub fn successors(self) -> &'static [BookingStatus] {
        match self {
            Self::Pending => &[Self::Confirmed, Self::Cancelled],
            Self::Confirmed => &[Self::CheckedIn, Self::Cancelled],
            Self::CheckedIn => &[Self::Completed],
            Self::Completed | Self::Cancelled => &[],
        }
    }

    pub fn is_terminal(self) -> bool {
        self.successors().is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Authorized,
    Captured,
    Refunded,
    Failed,
    Reconciled,
}

impl PaymentStatus {
    /// The `payment_status` enum label in PostgreSQL.
    pub fn as_sql(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Authorized => "authorized",
            Self::Captured => "captured",
            Self::Refunded => "refunded",
            Self::Failed => "failed",
            Self::Reconciled => "reconciled",
        }
    }

    /// Statuses reachable in one step, ignoring what the booking allows.
    pub fn successors(self) -> &'static [PaymentStatus] {
        match self {
            Self::Pending => &[Self::Authorized, Self::Failed],
            Self::Authorized => &[Self::Captured, Self::Failed],
            Self::Captured => &[Self::Refunded, Self::Reconciled],
            Self::Refunded => &[Self::Reconciled],
            Self::Failed | Self::Reconciled => &[],
        }
    }

    pub fn is_terminal(self) -> bool {
        self.successors().is_empty()
    }

    /// Money is held or taken: the booking may be confirmed against it.
    pub fn secures_booking(self) -> bool {
        matches!(self, Self::Authorized | Self::Captured)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoyaltyTier {
    Basic,
    Silver,
    Gold,
    Platinum,
}

impl LoyaltyTier {
    pub const ALL: [LoyaltyTier; 4] = [Self::Basic, Self::Silver, Self::Gold, Self::Platinum];

    pub fn as_sql(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::Silver => "silver",
            Self::Gold => "gold",
            Self::Platinum => "platinum",
        }
    }
}

/// Planner-assigned handles: the n-th user, booking or payment the run created. The database
/// assigns the real keys; handles keep a plan independent of them, hence reproducible.
pub type UserHandle = u32;
pub type BookingHandle = u32;
pub type PaymentHandle = u32;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Operation {
    SignUp {
        user: UserHandle,
        email: String,
        full_name: String,
        phone: Option<String>,
        country_code: &'static str,
        /// jsonb document text.
        preferences: String,
    },
    EditProfile {
        user: UserHandle,
        change: ProfileChange,
    },
    /// Deletes the account with its bookings and their payments.
    DeleteAccount { user: UserHandle },
    CreateBooking {
        booking: BookingHandle,
        user: UserHandle,
        destination: &'static str,
        hotel_name: Option<&'static str>,
        /// Check-in is this many days after the day the operation runs.
        check_in_in_days: u16,
        nights: u16,
        guests: i16,
        /// Total in hundredths of the currency unit (numeric(12,2)).
        total_cents: i64,
        currency: &'static str,
        /// jsonb document text.
        details: String,
    },
    BookingTransition {
        booking: BookingHandle,
        from: BookingStatus,
        to: BookingStatus,
    },
    CreatePayment {
        payment: PaymentHandle,
        booking: BookingHandle,
        amount_cents: i64,
        currency: &'static str,
        method: &'static str,
        card_last4: Option<String>,
    },
    PaymentTransition {
        payment: PaymentHandle,
        from: PaymentStatus,
        to: PaymentStatus,
        /// Set when the provider answers (authorization); kept afterwards.
        provider_ref: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "field", content = "value", rename_all = "snake_case")]
pub enum ProfileChange {
    Phone(Option<String>),
    FullName(String),
    LoyaltyTier(LoyaltyTier),
    /// jsonb document text.
    Preferences(String),
    Active(bool),
}

impl Operation {
    /// Short label for metrics and progress output.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SignUp { .. } => "sign_up",
            Self::EditProfile { .. } => "edit_profile",
            Self::DeleteAccount { .. } => "delete_account",
            Self::CreateBooking { .. } => "create_booking",
            Self::BookingTransition { .. } => "booking_transition",
            Self::CreatePayment { .. } => "create_payment",
            Self::PaymentTransition { .. } => "payment_transition",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IllegalOperation {
    #[error("{0} does not exist (never created or deleted)")]
    Missing(String),
    #[error("{what} cannot go from {from} to {to}")]
    Transition {
        what: String,
        from: String,
        to: String,
    },
    #[error("{0}")]
    Rule(String),
    #[error("handle {0} is not the next free handle")]
    Handle(String),
}

#[derive(Debug, Clone)]
pub struct UserState {
    pub alive: bool,
    pub bookings: Vec<BookingHandle>,
}

#[derive(Debug, Clone)]
pub struct BookingState {
    pub user: UserHandle,
    pub status: BookingStatus,
    pub alive: bool,
    pub payments: Vec<PaymentHandle>,
}

#[derive(Debug, Clone)]
pub struct PaymentState {
    pub booking: BookingHandle,
    pub status: PaymentStatus,
    pub alive: bool,
}

/// What exists after the operations applied so far. `apply` is the referee: it refuses any
/// operation the domain rules forbid, whoever proposes it.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub users: Vec<UserState>,
    pub bookings: Vec<BookingState>,
    pub payments: Vec<PaymentState>,
}

impl World {
    pub fn user(&self, user: UserHandle) -> Result<&UserState, IllegalOperation> {
        self.users
            .get(user as usize)
            .filter(|u| u.alive)
            .ok_or_else(|| IllegalOperation::Missing(format!("user {user}")))
    }

    pub fn booking(&self, booking: BookingHandle) -> Result<&BookingState, IllegalOperation> {
        self.bookings
            .get(booking as usize)
            .filter(|b| b.alive)
            .ok_or_else(|| IllegalOperation::Missing(format!("booking {booking}")))
    }

    pub fn payment(&self, payment: PaymentHandle) -> Result<&PaymentState, IllegalOperation> {
        self.payments
            .get(payment as usize)
            .filter(|p| p.alive)
            .ok_or_else(|| IllegalOperation::Missing(format!("payment {payment}")))
    }

    /// The user a handle's operation belongs to: operations on one user's data must run in order.
    pub fn owner(&self, op: &Operation) -> UserHandle {
        match op {
            Operation::SignUp { user, .. }
            | Operation::EditProfile { user, .. }
            | Operation::DeleteAccount { user }
            | Operation::CreateBooking { user, .. } => *user,
            Operation::BookingTransition { booking, .. }
            | Operation::CreatePayment { booking, .. } => {
                self.bookings.get(*booking as usize).map_or(0, |b| b.user)
            }
            Operation::PaymentTransition { payment, .. } => self
                .payments
                .get(*payment as usize)
                .and_then(|p| self.bookings.get(p.booking as usize))
                .map_or(0, |b| b.user),
        }
    }

    fn live_payments(&self, booking: &BookingState) -> impl Iterator<Item = &PaymentState> {
        booking
            .payments
            .iter()
            .filter_map(|p| self.payments.get(*p as usize))
            .filter(|p| p.alive)
    }

    /// Whether the booking may move to `to` now, given its payments.
    pub fn booking_transition_allowed(&self, booking: &BookingState, to: BookingStatus) -> bool {
        if !booking.status.successors().contains(&to) {
            return false;
        }
        match to {
            // A booking is confirmed once money is held for it, and guests check in only
            // once it is actually taken.
            BookingStatus::Confirmed => self
                .live_payments(booking)
                .any(|p| p.status.secures_booking()),
            BookingStatus::CheckedIn => self.live_payments(booking).any(|p| {
                matches!(
                    p.status,
                    PaymentStatus::Captured | PaymentStatus::Reconciled
                )
            }),
            // Money still in flight must settle first: cancel only with no pending or
            // authorized payment left.
            BookingStatus::Cancelled => !self
                .live_payments(booking)
                .any(|p| matches!(p.status, PaymentStatus::Pending | PaymentStatus::Authorized)),
            BookingStatus::Pending | BookingStatus::Completed => true,
        }
    }

    /// Whether a new payment may be opened for the booking: it is pending and has no payment
    /// that is not failed.
    pub fn payment_allowed(&self, booking: &BookingState) -> bool {
        booking.status == BookingStatus::Pending
            && self
                .live_payments(booking)
                .all(|p| p.status == PaymentStatus::Failed)
    }

    /// Whether the payment may move to `to` now, given its booking.
    pub fn payment_transition_allowed(&self, payment: &PaymentState, to: PaymentStatus) -> bool {
        if !payment.status.successors().contains(&to) {
            return false;
        }
        let Some(booking) = self.bookings.get(payment.booking as usize) else {
            return false;
        };
        match to {
            // No new money is taken for a booking that is over.
            PaymentStatus::Authorized | PaymentStatus::Captured => !booking.status.is_terminal(),
            // Refunds are for cancelled bookings only.
            PaymentStatus::Refunded => booking.status == BookingStatus::Cancelled,
            // Reconciliation closes the books on a stay that happened or a refund.
            PaymentStatus::Reconciled => {
                payment.status == PaymentStatus::Refunded
                    || matches!(
                        booking.status,
                        BookingStatus::CheckedIn | BookingStatus::Completed
                    )
            }
            PaymentStatus::Failed | PaymentStatus::Pending => true,
        }
    }

    /// Checks `op` against the rules and, if legal, records its effect.
    pub fn apply(&mut self, op: &Operation) -> Result<(), IllegalOperation> {
        match op {
            Operation::SignUp { user, .. } => {
                if *user as usize != self.users.len() {
                    return Err(IllegalOperation::Handle(format!("user {user}")));
                }
                self.users.push(UserState {
                    alive: true,
                    bookings: Vec::new(),
                });
            }
            Operation::EditProfile { user, .. } => {
                self.user(*user)?;
            }
            Operation::DeleteAccount { user } => {
                let bookings = self.user(*user)?.bookings.clone();
                for booking in bookings {
                    let state = &mut self.bookings[booking as usize];
                    state.alive = false;
                    for payment in state.payments.clone() {
                        self.payments[payment as usize].alive = false;
                    }
                }
                self.users[*user as usize].alive = false;
            }
            Operation::CreateBooking {
                booking,
                user,
                nights,
                guests,
                total_cents,
                ..
            } => {
                self.user(*user)?;
                if *booking as usize != self.bookings.len() {
                    return Err(IllegalOperation::Handle(format!("booking {booking}")));
                }
                if *nights == 0 || !(1..=20).contains(guests) || *total_cents < 0 {
                    return Err(IllegalOperation::Rule(format!(
                        "booking {booking}: bad stay or amount"
                    )));
                }
                self.bookings.push(BookingState {
                    user: *user,
                    status: BookingStatus::Pending,
                    alive: true,
                    payments: Vec::new(),
                });
                self.users[*user as usize].bookings.push(*booking);
            }
            Operation::BookingTransition { booking, from, to } => {
                let state = self.booking(*booking)?;
                if state.status != *from || !self.booking_transition_allowed(state, *to) {
                    return Err(IllegalOperation::Transition {
                        what: format!("booking {booking}"),
                        from: state.status.as_sql().into(),
                        to: to.as_sql().into(),
                    });
                }
                self.bookings[*booking as usize].status = *to;
            }
            Operation::CreatePayment {
                payment,
                booking,
                amount_cents,
                ..
            } => {
                let state = self.booking(*booking)?;
                if *payment as usize != self.payments.len() {
                    return Err(IllegalOperation::Handle(format!("payment {payment}")));
                }
                if !self.payment_allowed(state) || *amount_cents <= 0 {
                    return Err(IllegalOperation::Rule(format!(
                        "no new payment for booking {booking} ({})",
                        state.status.as_sql()
                    )));
                }
                self.payments.push(PaymentState {
                    booking: *booking,
                    status: PaymentStatus::Pending,
                    alive: true,
                });
                self.bookings[*booking as usize].payments.push(*payment);
            }
            Operation::PaymentTransition {
                payment, from, to, ..
            } => {
                let state = self.payment(*payment)?;
                if state.status != *from || !self.payment_transition_allowed(state, *to) {
                    return Err(IllegalOperation::Transition {
                        what: format!("payment {payment}"),
                        from: state.status.as_sql().into(),
                        to: to.as_sql().into(),
                    });
                }
                self.payments[*payment as usize].status = *to;
            }
        }
        Ok(())
    }
}
