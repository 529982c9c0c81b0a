-- oob-engine schema: the only DDL. PostgreSQL is the single source of truth.
-- Idempotent: `oob-engine migrate` applies it, and `oob-engine serve` applies it at start-up,
-- so applying it twice (or from two instances at once: see the advisory lock) is harmless.
-- Every statement is `if not exists` / `create or replace`.

select pg_advisory_xact_lock(7319001);  -- serialises concurrent migrations (held to COMMIT)

create table if not exists schema_info (
    singleton boolean primary key default true check (singleton),
    version integer not null,
    applied_at timestamptz not null default now()
);

-- One out-of-band authentication (D1 Authenticate). Keyed on (issuer_id, authentication_id);
-- `id` is a compact surrogate for the transitions log, the timer wheel and keyset pagination.
create table if not exists authentications (
    id                 bigint generated always as identity unique,
    issuer_id          text not null check (char_length(issuer_id) = 10),
    -- Grammar checks of the identifiers below: see the block after the table.
    authentication_id  text not null,
    consumer_id        text not null,
    card_id            text,
    pan_suffix         text,
    acs_transaction_id text check (char_length(acs_transaction_id) between 1 and 64),
    merchant_name      text check (char_length(merchant_name) between 1 and 128),
    amount             text,
    currency_code      text,
    state              text not null check (state in ('PENDING', 'AUTHENTICATED', 'AUTHENTICATION_FAILED', 'TECHNICAL_ERROR')),
    reason             text check (char_length(reason) between 1 and 64),
    deadline           timestamptz not null,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    version            integer not null default 1,
    primary key (issuer_id, authentication_id),
    -- Only the cardholder's approval authenticates, and it carries no reason.
    check (state <> 'AUTHENTICATED' or reason is null),
    check (state = 'PENDING' or state = 'AUTHENTICATED' or reason is not null)
);

-- The identifiers' grammars ('^[A-Za-z0-9_-]{1,64}$' and the like) are checked as a length and a
-- negated character class: `x !~ '[^A-Za-z0-9_-]'` (no character outside the set). Every insert
-- and update evaluates these six checks, and the form matters. Measured on PostgreSQL 15 for a
-- 32-character hex id: the anchored regex with its bounded repetition {1,64} takes about 12 µs,
-- ltrim with the 64-character set (the form before this one) about 5 µs, this one under 1 µs.
-- With the older forms the checks were a sixth to a third of a batched insert's time per row.
-- A database created with an older form gets these once, under the same names. They are added
-- NOT VALID, which is instant: re-checking a large table would hold its lock for minutes, and
-- the rows already passed the same rules. New and updated rows are checked at once; an empty
-- (new) table is validated here, and an operator can run
-- `alter table authentications validate constraint ...` online on an upgraded one.
do $$
begin
    if not exists (select 1 from pg_constraint
                   where conrelid = 'authentications'::regclass and conname = 'authentications_authentication_id_check'
                     and pg_get_constraintdef(oid) like '%!~%') then
        alter table authentications
            drop constraint if exists authentications_authentication_id_check,
            drop constraint if exists authentications_consumer_id_check,
            drop constraint if exists authentications_card_id_check,
            drop constraint if exists authentications_pan_suffix_check,
            drop constraint if exists authentications_amount_check,
            drop constraint if exists authentications_currency_code_check,
            add constraint authentications_authentication_id_check
                check (char_length(authentication_id) between 1 and 64 and authentication_id !~ '[^A-Za-z0-9_-]') not valid,
            add constraint authentications_consumer_id_check
                check (char_length(consumer_id) between 1 and 64 and consumer_id !~ '[^A-Za-z0-9_-]') not valid,
            add constraint authentications_card_id_check
                check (char_length(card_id) between 1 and 48 and card_id !~ '[^A-Za-z0-9_-]') not valid,
            add constraint authentications_pan_suffix_check
                check (char_length(pan_suffix) = 4 and pan_suffix !~ '[^0-9]') not valid,
            add constraint authentications_amount_check
                check (char_length(amount) between 1 and 48 and amount !~ '[^0-9]') not valid,
            add constraint authentications_currency_code_check
                check (char_length(currency_code) = 3 and currency_code !~ '[^A-Za-z]') not valid;
        if not exists (select 1 from authentications) then
            alter table authentications
                validate constraint authentications_authentication_id_check,
                validate constraint authentications_consumer_id_check,
                validate constraint authentications_card_id_check,
                validate constraint authentications_pan_suffix_check,
                validate constraint authentications_amount_check,
                validate constraint authentications_currency_code_check;
        end if;
    end if;
end $$;

-- Recovery and the sweeper read only PENDING deadlines: a small partial index.
create index if not exists authentications_pending_deadline
    on authentications (deadline, id) where state = 'PENDING';
-- Operations list newest first, by issuer and state (keyset pagination on id).
create index if not exists authentications_issuer_id_desc on authentications (issuer_id, id desc);
create index if not exists authentications_consumer on authentications (issuer_id, consumer_id, id desc);

-- Append-only log of every state change, creation included, and of refused attempts.
create table if not exists transitions (
    id                bigint generated always as identity primary key,
    authentication_id bigint not null references authentications (id),
    from_state        text check (from_state in ('PENDING', 'AUTHENTICATED', 'AUTHENTICATION_FAILED', 'TECHNICAL_ERROR')),
    to_state          text not null check (to_state in ('PENDING', 'AUTHENTICATED', 'AUTHENTICATION_FAILED', 'TECHNICAL_ERROR')),
    cause             text not null check (cause in ('create', 'no-authenticator', 'decision', 'timer', 'poll',
                                                     'sweeper', 'operator', 'push', 'd1-notification')),
    actor             text not null check (char_length(actor) between 1 and 128),
    outcome           text not null default 'applied' check (outcome in ('applied', 'refused')),
    detail            text check (char_length(detail) <= 256),
    at                timestamptz not null default clock_timestamp()
);
create index if not exists transitions_authentication on transitions (authentication_id, id);
-- At most one applied terminal transition per authentication, whatever races above.
create unique index if not exists transitions_one_terminal
    on transitions (authentication_id) where outcome = 'applied' and to_state <> 'PENDING';
-- At most one creation.
create unique index if not exists transitions_one_creation
    on transitions (authentication_id) where from_state is null;

-- The cardholder's registered app instances (authenticators) per consumer.
create table if not exists authenticators (
    issuer_id       text not null check (char_length(issuer_id) = 10),
    consumer_id     text not null check (consumer_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    app_instance_id text not null check (char_length(app_instance_id) between 1 and 128),
    authn_type      text not null check (authn_type in ('BIOMETRIC', 'PLATFORM')),
    active          boolean not null default true,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    primary key (issuer_id, consumer_id, app_instance_id)
);
create index if not exists authenticators_active on authenticators (issuer_id, consumer_id) where active;

-- Database-level guard: a terminal authentication never changes (PSD2 RTS art. 4(1)), a
-- PENDING one changes only by leaving PENDING, and identity columns never change. Bumps
-- version and updated_at so no caller can forget to.
create or replace function authentications_guard() returns trigger language plpgsql as $$
begin
    if old.state <> 'PENDING' then
        raise exception 'authentication %/% is final (%): it cannot change', old.issuer_id, old.authentication_id, old.state
            using errcode = 'P0001', constraint = 'authentications_terminal_guard';
    end if;
    if new.issuer_id <> old.issuer_id or new.authentication_id <> old.authentication_id
       or new.consumer_id <> old.consumer_id or new.created_at <> old.created_at
       or new.card_id is distinct from old.card_id or new.pan_suffix is distinct from old.pan_suffix
       or new.acs_transaction_id is distinct from old.acs_transaction_id
       or new.merchant_name is distinct from old.merchant_name or new.amount is distinct from old.amount
       or new.currency_code is distinct from old.currency_code then
        raise exception 'the identity and details of an authentication never change'
            using errcode = 'P0001', constraint = 'authentications_immutable_details';
    end if;
    new.version := old.version + 1;
    new.updated_at := now();
    return new;
end $$;

create or replace function authentications_no_delete() returns trigger language plpgsql as $$
begin
    if old.state = 'PENDING' then
        raise exception 'a PENDING authentication cannot be deleted'
            using errcode = 'P0001', constraint = 'authentications_pending_delete_guard';
    end if;
    return old;
end $$;

create or replace function transitions_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'the transitions log is append-only'
        using errcode = 'P0001', constraint = 'transitions_append_only';
end $$;

-- Instances answer polls from memory (final states; PENDING only while they are in step with this
-- database): every statement that updates authentications announces the rows it changed at
-- commit on channel oob_authentication_changed, as "issuer_id/authentication_id" keys separated
-- by spaces, so each instance forgets what it held for them within milliseconds. One notification
-- per statement, not one per row (per row, pg_notify cost about a quarter of a 40-row decision
-- batch), up to 64 keys each: a key and its separator take at most 106 bytes (10 characters of
-- up to 4 bytes, "/", 64 ASCII characters, " "), and PostgreSQL refuses a payload of 8000 bytes
-- or more, the update with it. Every update the engine makes is a change of state; announcing
-- any other update too is harmless (a PENDING record is read again). Memory only speeds things
-- up: nothing is lost if nobody listens.
create or replace function authentications_announce_changes() returns trigger language plpgsql as $$
begin
    perform pg_notify('oob_authentication_changed', string_agg(changed.key, ' '))
    from (select issuer_id || '/' || authentication_id as key, (row_number() over () - 1) / 64 as chunk
          from changed_rows) changed
    group by changed.chunk;
    return null;
end $$;

do $$
begin
    if not exists (select 1 from pg_trigger where tgname = 'authentications_guard') then
        create trigger authentications_guard before update on authentications
            for each row execute function authentications_guard();
    end if;
    if not exists (select 1 from pg_trigger where tgname = 'authentications_no_delete') then
        create trigger authentications_no_delete before delete on authentications
            for each row execute function authentications_no_delete();
    end if;
    -- Until 2026-12-02 the announcement was a row trigger: one notification per row.
    if exists (select 1 from pg_trigger where tgname = 'authentications_notify_change') then
        drop trigger authentications_notify_change on authentications;
        drop function authentications_notify_change();
    end if;
    if not exists (select 1 from pg_trigger where tgname = 'authentications_announce_changes') then
        create trigger authentications_announce_changes after update on authentications
            referencing new table as changed_rows
            for each statement execute function authentications_announce_changes();
    end if;
    if not exists (select 1 from pg_trigger where tgname = 'transitions_append_only') then
        create trigger transitions_append_only before update or delete on transitions
            for each row execute function transitions_append_only();
    end if;
end $$;

-- Durable outbox: what must reach the bank's app backend (a push per new challenge) or the OTP
-- delivery service, written in the same statement as what it announces, so creating never waits
-- for delivery and nothing is lost in a crash. Workers on every instance claim due items with a
-- short lease (`FOR UPDATE SKIP LOCKED`), so an item is attempted by one worker at a time and a
-- crashed worker's lease simply runs out.
create table if not exists outbox (
    id                bigint generated always as identity primary key,
    authentication_id bigint references authentications (id),
    kind              text not null check (kind in ('push', 'otp')),
    -- Only what cannot be read back from other tables (an OTP message); erased when finished.
    payload           text,
    state             text not null default 'pending' check (state in ('pending', 'delivered', 'failed', 'dropped')),
    attempts          integer not null default 0,
    next_attempt_at   timestamptz not null default now(),
    lease_until       timestamptz,
    delivery_deadline timestamptz not null,
    last_error        text check (char_length(last_error) <= 256),
    created_at        timestamptz not null default now(),
    finished_at       timestamptz,
    check (state = 'pending' or finished_at is not null),
    check (state = 'pending' or payload is null)
);
create index if not exists outbox_due on outbox (kind, next_attempt_at, id) where state = 'pending';
create index if not exists outbox_authentication on outbox (authentication_id);

-- D1's other outbound calls (issue 6): notifications, consumer information, the authenticator registry.
-- Notify Consumer Operation, kept for idempotency (D1 retries on the same operationId) and reporting.
create table if not exists consumer_operations (
    issuer_id       text not null check (char_length(issuer_id) = 10),
    operation_id    text not null check (operation_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    consumer_id     text not null check (consumer_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    operation       text not null check (operation in ('ENROLL_AUTHN')),
    status          text not null check (status in ('SUCCESSFUL', 'FAILED')),
    app_instance_id text check (char_length(app_instance_id) between 1 and 128),
    authn_type      text check (authn_type in ('BIOMETRIC', 'PLATFORM')),
    start_time      text not null check (char_length(start_time) between 1 and 64),
    end_time        text check (char_length(end_time) between 1 and 64),
    error           text check (char_length(error) <= 1024),
    received_at     timestamptz not null default now(),
    primary key (issuer_id, operation_id)
);

-- Notify 3-D Secure Card Operation: every operation on a card, stored for reporting; for
-- 3DS_CHALLENGE_OOB_ISSUER also D1's final word (status, transStatus, eci) beside the engine's
-- (authentications rows are immutable once final, so D1's outcome lives here).
create table if not exists card_operations (
    issuer_id           text not null check (char_length(issuer_id) = 10),
    operation_id        text not null check (operation_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    card_id             text not null check (card_id ~ '^[A-Za-z0-9_-]{1,48}$'),
    consumer_id         text check (consumer_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    operation           text not null check (operation in ('3DS_FRICTIONLESS', '3DS_CHALLENGE_OOB',
                                                           '3DS_CHALLENGE_OOB_ISSUER', '3DS_CHALLENGE_OTP_SMS')),
    status              text not null check (status in ('SUCCESSFUL', 'FAILED')),
    start_time          text not null check (char_length(start_time) between 1 and 64),
    acs_transaction_id  text check (char_length(acs_transaction_id) between 1 and 64),
    trans_status        text check (trans_status in ('Y', 'N', 'U', 'R')),
    trans_status_reason text check (char_length(trans_status_reason) = 2),
    eci                 text check (char_length(eci) between 1 and 8),
    -- The matched authentication, the engine's state once the notification was applied, whether
    -- this notification ended it, and how D1's status compares.
    authentication_id   bigint references authentications (id),
    engine_state        text check (engine_state in ('PENDING', 'AUTHENTICATED', 'AUTHENTICATION_FAILED', 'TECHNICAL_ERROR')),
    ended_by_d1         boolean not null default false,
    agreement           text check (agreement in ('agreed', 'disagreed', 'pending', 'unmatched')),
    body                text not null,
    received_at         timestamptz not null default now(),
    primary key (issuer_id, operation_id)
);
create index if not exists card_operations_card on card_operations (issuer_id, card_id, received_at desc);
create index if not exists card_operations_disagreed on card_operations (issuer_id, received_at desc) where agreement = 'disagreed';
-- Matching a notification to its authentication (details.acsTransactionId), and knowing a card.
create index if not exists authentications_acs on authentications (issuer_id, acs_transaction_id)
    where acs_transaction_id is not null;
create index if not exists authentications_card on authentications (issuer_id, card_id) where card_id is not null;

-- Consumers' personal information for Get Consumer Information, maintained by the bank's app
-- backend; `info` is the validated consumerInfo JSON exactly as served to D1.
create table if not exists consumers (
    issuer_id   text not null check (char_length(issuer_id) = 10),
    consumer_id text not null check (consumer_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    info        text not null,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    primary key (issuer_id, consumer_id)
);
-- The consumer's cards, as the app backend lists them (a card belongs to one consumer).
create table if not exists consumer_cards (
    issuer_id   text not null check (char_length(issuer_id) = 10),
    card_id     text not null check (card_id ~ '^[A-Za-z0-9_-]{1,48}$'),
    consumer_id text not null,
    primary key (issuer_id, card_id),
    foreign key (issuer_id, consumer_id) references consumers (issuer_id, consumer_id) on delete cascade
);
create index if not exists consumer_cards_consumer on consumer_cards (issuer_id, consumer_id);

-- (Later sections go above this line.)
insert into schema_info (version) values (1)
    on conflict (singleton) do update set version = greatest(schema_info.version, excluded.version);
