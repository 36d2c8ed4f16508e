/*  =========================================================================
    payments - the payment service of the shop saga, idempotent

    A durable consumer of OrderPlaced (stream "orders"): it charges the
    order's card and records PaymentCompleted, or PaymentFailed when the
    card is declined (a card number ending in 0000, so that tests and
    demos know the outcome in advance). A durable consumer of StockFailed
    (stream "inventory"): the saga's compensation, PaymentRefunded for an
    order it charged.

    Idempotent: at start it folds its own "payments" log into a table of
    the orders it charged, declined and refunded. An OrderPlaced delivered
    again (after a crash before its acknowledgement, or repeated by a
    producer) finds its order in the table and charges nothing; the same
    holds for a repeated StockFailed. An event is acknowledged only once
    what it caused is durable (service.c), so a SIGKILL at any point
    neither loses a payment nor makes a second one.

        payments --data DIR [common options]
    ========================================================================= */

#include "service.h"
#include "shop.pb-c.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PROGRAM "payments"

typedef struct {
    int64_t charged;  //  cents charged, 0 when declined
    int64_t refunded; //  cents refunded
    bool declined;    //  PaymentFailed recorded
} s_payment_t;

typedef struct {
    service_t *service;   //  node and loop
    zhashx_t *payments;   //  order id -> s_payment_t
    uint64_t redelivered; //  inputs that found their order already handled
} s_payments_t;

static s_payment_t *
s_payment (s_payments_t *self, const char *order_id)
{
    s_payment_t *payment = (s_payment_t *) zhashx_lookup (self->payments, order_id);
    if (!payment) {
        payment = (s_payment_t *) calloc (1, sizeof (s_payment_t));
        zhashx_insert (self->payments, order_id, payment);
    }
    return payment;
}

//  Folds one event of the own log into the table.
static void
s_fold (void *arg, const shoal_event_t *event)
{
    s_payments_t *self = (s_payments_t *) arg;
    const char *type = shoal_event_type (event);
    if (streq (type, "PaymentCompleted")) {
        Shop__V1__PaymentCompleted *done = (Shop__V1__PaymentCompleted *) service_unpack (
            S_PROGRAM, &shop__v1__payment_completed__descriptor, event);
        if (done) {
            s_payment (self, done->order_id)->charged = done->amount_cents;
            protobuf_c_message_free_unpacked (&done->base, NULL);
        }
    }
    else if (streq (type, "PaymentFailed"))
        s_payment (self, shoal_event_key (event))->declined = true;
    else if (streq (type, "PaymentRefunded")) {
        Shop__V1__PaymentRefunded *refund = (Shop__V1__PaymentRefunded *) service_unpack (
            S_PROGRAM, &shop__v1__payment_refunded__descriptor, event);
        if (refund) {
            s_payment (self, refund->order_id)->refunded = refund->amount_cents;
            protobuf_c_message_free_unpacked (&refund->base, NULL);
        }
    }
}

static bool
s_declined (const char *card)
{
    size_t length = strlen (card);
    return length < 4 || streq (card + length - 4, "0000");
}

static void
s_charge (s_payments_t *self, const shoal_event_t *event)
{
    Shop__V1__OrderPlaced *order = (Shop__V1__OrderPlaced *) service_unpack (
        S_PROGRAM, &shop__v1__order_placed__descriptor, event);
    if (!order)
        return;
    s_payment_t *payment = (s_payment_t *) zhashx_lookup (self->payments, order->order_id);
    if (payment && (payment->charged || payment->declined)) {
        self->redelivered++;
        protobuf_c_message_free_unpacked (&order->base, NULL);
        return;
    }
    char cause[33];
    service_event_id (event, cause);
    const char *correlation =
        *shoal_event_correlation_id (event) ? shoal_event_correlation_id (event) : order->order_id;
    //  Schema version 1 orders have no currency: they are in euros.
    const char *currency = *order->currency ? order->currency : "EUR";
    if (s_declined (order->card) || order->total_cents <= 0) {
        Shop__V1__PaymentFailed failed = SHOP__V1__PAYMENT_FAILED__INIT;
        failed.order_id = order->order_id;
        failed.amount_cents = order->total_cents;
        failed.reason = order->total_cents <= 0 ? "bad amount" : "card declined";
        if (service_emit (self->service, "payments", "PaymentFailed", order->order_id, correlation,
                          cause, 1, &failed.base, NULL, NULL)
            == 0)
            s_payment (self, order->order_id)->declined = true;
    }
    else {
        Shop__V1__PaymentCompleted done = SHOP__V1__PAYMENT_COMPLETED__INIT;
        done.order_id = order->order_id;
        done.amount_cents = order->total_cents;
        done.sku = order->sku;
        done.quantity = order->quantity;
        done.currency = (char *) currency;
        if (service_emit (self->service, "payments", "PaymentCompleted", order->order_id,
                          correlation, cause, 1, &done.base, NULL, NULL)
            == 0)
            s_payment (self, order->order_id)->charged = order->total_cents;
    }
    protobuf_c_message_free_unpacked (&order->base, NULL);
}

static void
s_refund (s_payments_t *self, const shoal_event_t *event)
{
    Shop__V1__StockFailed *failed = (Shop__V1__StockFailed *) service_unpack (
        S_PROGRAM, &shop__v1__stock_failed__descriptor, event);
    if (!failed)
        return;
    s_payment_t *payment = (s_payment_t *) zhashx_lookup (self->payments, failed->order_id);
    if (!payment || !payment->charged) {
        fprintf (stderr, S_PROGRAM ": StockFailed for '%s', which was not charged: ignored\n",
                 failed->order_id);
    }
    else if (payment->refunded)
        self->redelivered++;
    else {
        char cause[33];
        service_event_id (event, cause);
        Shop__V1__PaymentRefunded refund = SHOP__V1__PAYMENT_REFUNDED__INIT;
        refund.order_id = failed->order_id;
        refund.amount_cents = payment->charged;
        refund.reason = "out of stock";
        if (service_emit (self->service, "payments", "PaymentRefunded", failed->order_id,
                          shoal_event_correlation_id (event), cause, 1, &refund.base, NULL, NULL)
            == 0)
            payment->refunded = payment->charged;
    }
    protobuf_c_message_free_unpacked (&failed->base, NULL);
}

static void
s_handle (void *arg, int subscription, const shoal_event_t *event)
{
    (void) subscription;
    s_payments_t *self = (s_payments_t *) arg;
    if (streq (shoal_event_type (event), "OrderPlaced"))
        s_charge (self, event);
    else if (streq (shoal_event_type (event), "StockFailed"))
        s_refund (self, event);
}

int
main (int argc, char **argv)
{
    service_config_t config = {.program = S_PROGRAM};
    service_parse (&config, argc, argv, NULL, NULL);

    s_payments_t self = {0};
    self.payments = zhashx_new ();
    zhashx_set_destructor (self.payments, (zhashx_destructor_fn *) zstr_free);
    if (service_read_own_log (config.data_dir, "payments", s_fold, &self)) {
        zhashx_destroy (&self.payments);
        return 1;
    }
    size_t rebuilt = zhashx_size (self.payments);
    self.service = service_new (&config);
    if (!self.service) {
        zhashx_destroy (&self.payments);
        return 1;
    }
    fprintf (stderr, S_PROGRAM ": %zu payments rebuilt from the log\n", rebuilt);
    shoal_node_t *node = service_node (self.service);
    shoal_node_subscribe_durable (node, "payments.orders", "orders", "OrderPlaced");
    shoal_node_subscribe_durable (node, "payments.inventory", "inventory", "StockFailed");
    int rc = service_run (self.service, s_handle, NULL, NULL, &self);
    fprintf (stderr, S_PROGRAM ": stopping; %llu redelivered inputs changed nothing\n",
             (unsigned long long) self.redelivered);
    service_destroy (&self.service);
    zhashx_destroy (&self.payments);
    return rc ? 1 : 0;
}
