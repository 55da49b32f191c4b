-- The README queries of the Decimal(38, 9) schema (before migration 13),
-- run by TestLegacyQueriesStillAnswer: SQL written against it still answers.

-- name: usage_by_customer_feature_day
SELECT customer_id, feature, day, sum(credits) AS credits, sum(quantity) AS quantity, sum(events) AS events
FROM usage_daily FINAL
WHERE day >= toDate('2026-11-01') AND day < toDate('2026-12-01')
GROUP BY customer_id, feature, day
HAVING events > 0
ORDER BY customer_id, feature, day

-- name: usage_by_customer_feature_day_raw
SELECT customer_id, feature, toDate(event_time) AS day, sum(credits) AS credits, sum(quantity) AS quantity, count() AS events
FROM rated_usage FINAL
WHERE event_time >= toDateTime('2026-11-01 00:00:00', 'UTC') AND event_time < toDateTime('2026-12-01 00:00:00', 'UTC')
GROUP BY customer_id, feature, day
ORDER BY customer_id, feature, day

-- name: usage_per_subscription_argmax
SELECT subscription_id, sum(c) AS credits, count() AS lines
FROM (
    SELECT subscription_id, event_id, line, argMax(credits, version) AS c
    FROM rated_usage
    WHERE event_time >= toDateTime('2026-11-01 00:00:00', 'UTC') AND event_time < toDateTime('2026-12-01 00:00:00', 'UTC')
    GROUP BY subscription_id, event_id, line
)
GROUP BY subscription_id
ORDER BY subscription_id

-- name: credits_vs_money
SELECT l.subscription_id, credits_in, money_charged, credits_used, money_value_used
FROM (
    SELECT subscription_id,
        sumIf(amount, amount > 0) AS credits_in,
        sum(money_amount) AS money_charged
    FROM credit_ledger FINAL
    WHERE created_at >= toDateTime('2026-11-01 00:00:00', 'UTC') AND created_at < toDateTime('2026-12-01 00:00:00', 'UTC')
    GROUP BY subscription_id
) AS l
ANY LEFT JOIN (
    SELECT subscription_id, sum(credits) AS credits_used, sum(money_value) AS money_value_used
    FROM rated_usage FINAL
    WHERE event_time >= toDateTime('2026-11-01 00:00:00', 'UTC') AND event_time < toDateTime('2026-12-01 00:00:00', 'UTC')
    GROUP BY subscription_id
) AS u USING (subscription_id)
ORDER BY l.subscription_id

-- name: top_spenders
SELECT customer_id, sum(credits) AS credits, sum(money_value) AS money_value
FROM rated_usage FINAL
WHERE event_time >= toDateTime('2026-11-01 00:00:00', 'UTC') AND event_time < toDateTime('2026-12-01 00:00:00', 'UTC')
GROUP BY customer_id
ORDER BY credits DESC
LIMIT 10

-- name: breakage
SELECT subscription_id, grant_id, -amount AS expired_credits, created_at
FROM credit_ledger FINAL
WHERE kind = 'expiry'
    AND created_at >= toDateTime('2026-11-01 00:00:00', 'UTC') AND created_at < toDateTime('2026-12-01 00:00:00', 'UTC')
ORDER BY subscription_id, created_at

-- name: unfunded_usage
SELECT subscription_id, feature, status, sum(unfunded_credits) AS short_credits, count() AS lines
FROM rated_usage FINAL
WHERE status != 'applied'
GROUP BY subscription_id, feature, status
ORDER BY subscription_id, feature, status

-- name: ledger_balances
SELECT subscription_id, sum(amount) AS balance, max(seq) AS last_seq, count() = max(seq) AS gapless
FROM credit_ledger FINAL
GROUP BY subscription_id
ORDER BY subscription_id
