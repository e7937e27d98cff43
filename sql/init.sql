-- Schema of the travel-booking OLTP database the CDC connector captures.
-- Applied once to a fresh database (psql -v ON_ERROR_STOP=1 -f sql/init.sql).

CREATE EXTENSION IF NOT EXISTS pgcrypto;  -- gen_random_uuid() on PostgreSQL < 13

CREATE TYPE booking_status AS ENUM ('pending', 'confirmed', 'checked_in', 'completed', 'cancelled');
CREATE TYPE payment_status AS ENUM ('pending', 'authorized', 'captured', 'refunded', 'failed', 'reconciled');

CREATE TABLE users (
    user_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    external_id   uuid        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    email         text        NOT NULL UNIQUE CHECK (position('@' IN email) > 1),
    full_name     text        NOT NULL,
    phone         varchar(32),
    country_code  char(2)     NOT NULL DEFAULT 'VN',
    loyalty_tier  text        NOT NULL DEFAULT 'basic' CHECK (loyalty_tier IN ('basic', 'silver', 'gold', 'platinum')),
    is_active     boolean     NOT NULL DEFAULT true,
    preferences   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE bookings (
    booking_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    booking_ref     uuid           NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    user_id         bigint         NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    destination     text           NOT NULL,
    hotel_name      text,
    check_in_date   date           NOT NULL,
    check_out_date  date           NOT NULL,
    guests          smallint       NOT NULL DEFAULT 1 CHECK (guests BETWEEN 1 AND 20),
    total_amount    numeric(12, 2) NOT NULL CHECK (total_amount >= 0),
    currency        char(3)        NOT NULL DEFAULT 'VND',
    status          booking_status NOT NULL DEFAULT 'pending',
    details         jsonb          NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz    NOT NULL DEFAULT now(),
    updated_at      timestamptz    NOT NULL DEFAULT now(),
    CHECK (check_out_date > check_in_date)
);
CREATE INDEX bookings_user_id_idx ON bookings (user_id);
CREATE INDEX bookings_status_idx ON bookings (status);

CREATE TABLE payments (
    payment_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    booking_id      bigint         NOT NULL REFERENCES bookings (booking_id) ON DELETE CASCADE,
    amount          numeric(12, 2) NOT NULL CHECK (amount > 0),
    currency        char(3)        NOT NULL DEFAULT 'VND',
    method          text           NOT NULL CHECK (method IN ('card', 'bank_transfer', 'e_wallet', 'cash')),
    card_last4      char(4),
    status          payment_status NOT NULL DEFAULT 'pending',
    provider_ref    text,
    metadata        jsonb          NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz    NOT NULL DEFAULT now(),
    updated_at      timestamptz    NOT NULL DEFAULT now()
);
CREATE INDEX payments_booking_id_idx ON payments (booking_id);

-- Keeps updated_at honest whatever the client sends.
CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER bookings_set_updated_at BEFORE UPDATE ON bookings
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER payments_set_updated_at BEFORE UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- The connector creates this publication itself when it is missing; creating it here lets a
-- database administrator own it (the connector then needs no CREATE privilege on the database).
CREATE PUBLICATION cdc_publication FOR TABLE users, bookings, payments;
