/*  =========================================================================
    orders - the order service of the shop saga, event-sourced

    Takes PlaceOrder commands on its ROUTER (--listen; `orders place` is the
    command-line client) and records each new order as OrderPlaced on
    stream "orders". It then follows the saga as a durable consumer of
    "payments" and "inventory" and closes each order with exactly one
    terminal event: OrderConfirmed when the stock was reserved,
    OrderCancelled when the payment failed or the stock did not suffice
    (payments refunds that case on its own).

    Its state is its log: at start it folds its own "orders" log into a
    table of orders and their status, so a PlaceOrder repeated with the
    same order id, or a saga event delivered again after a crash, changes
    nothing. Every event carries the order id as key and correlation id,
    and the id of the event that caused it as causation id.

        orders --data DIR --listen tcp://127.0.0.1:7100 [common options]
        orders place (--connect ENDPOINT | --data DIR) ORDER CUSTOMER SKU QTY TOTAL_CENTS CARD
   [CURRENCY] orders place (--connect ENDPOINT | --data DIR) --file FILE|-   one order per line,
   same fields
    ========================================================================= */

#include "service.h"
#include "shop.pb-c.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PROGRAM "orders"

typedef enum { S_PLACED, S_CONFIRMED, S_CANCELLED } s_status_t;

typedef struct {
    s_status_t status; //  where the order is in the saga
    uint64_t seq;      //  seq of its OrderPlaced
    char id[33];       //  event id of its OrderPlaced
    int64_t total;     //  total in cents
} s_order_t;

typedef struct {
    service_t *service; //  node and loop
    zhashx_t *orders;   //  order id -> s_order_t
    int sub_payments;   //  durable subscription to "payments"
    int sub_inventory;  //  durable subscription to "inventory"
} s_orders_t;

//  Folds one event of the own log into the table.
static void
s_fold (void *arg, const shoal_event_t *event)
{
    s_orders_t *self = (s_orders_t *) arg;
    const char *key = shoal_event_key (event);
    const char *type = shoal_event_type (event);
    s_order_t *order = (s_order_t *) zhashx_lookup (self->orders, key);
    if (streq (type, "OrderPlaced") && !order) {
        order = (s_order_t *) calloc (1, sizeof (s_order_t));
        order->seq = shoal_event_seq (event);
        service_event_id (event, order->id);
        Shop__V1__OrderPlaced *placed = (Shop__V1__OrderPlaced *) service_unpack (
            S_PROGRAM, &shop__v1__order_placed__descriptor, event);
        if (placed) {
            order->total = placed->total_cents;
            protobuf_c_message_free_unpacked (&placed->base, NULL);
        }
        zhashx_insert (self->orders, key, order);
    }
    else if (order && streq (type, "OrderConfirmed"))
        order->status = S_CONFIRMED;
    else if (order && streq (type, "OrderCancelled"))
        order->status = S_CANCELLED;
}

//  Closes an order with a terminal event, once.
static void
s_close (s_orders_t *self, const shoal_event_t *cause, const char *order_id, const char *reason)
{
    s_order_t *order = (s_order_t *) zhashx_lookup (self->orders, order_id);
    if (!order) {
        fprintf (stderr, S_PROGRAM ": %s for unknown order '%s' ignored\n",
                 shoal_event_type (cause), order_id);
        return;
    }
    if (order->status != S_PLACED)
        return; //  redelivered, or already closed: nothing to do
    char cause_id[33];
    service_event_id (cause, cause_id);
    int rc;
    if (reason) {
        Shop__V1__OrderCancelled cancelled = SHOP__V1__ORDER_CANCELLED__INIT;
        cancelled.order_id = (char *) order_id;
        cancelled.reason = (char *) reason;
        rc = service_emit (self->service, "orders", "OrderCancelled", order_id, order_id, cause_id,
                           1, &cancelled.base, NULL, NULL);
    }
    else {
        Shop__V1__OrderConfirmed confirmed = SHOP__V1__ORDER_CONFIRMED__INIT;
        confirmed.order_id = (char *) order_id;
        confirmed.total_cents = order->total;
        rc = service_emit (self->service, "orders", "OrderConfirmed", order_id, order_id, cause_id,
                           1, &confirmed.base, NULL, NULL);
    }
    if (rc == 0)
        order->status = reason ? S_CANCELLED : S_CONFIRMED;
}

static void
s_handle (void *arg, int subscription, const shoal_event_t *event)
{
    (void) subscription;
    s_orders_t *self = (s_orders_t *) arg;
    const char *type = shoal_event_type (event);
    if (streq (type, "PaymentFailed")) {
        Shop__V1__PaymentFailed *failed = (Shop__V1__PaymentFailed *) service_unpack (
            S_PROGRAM, &shop__v1__payment_failed__descriptor, event);
        if (failed) {
            char reason[256];
            snprintf (reason, sizeof reason, "payment failed: %s", failed->reason);
            s_close (self, event, failed->order_id, reason);
            protobuf_c_message_free_unpacked (&failed->base, NULL);
        }
    }
    else if (streq (type, "StockReserved")) {
        Shop__V1__StockReserved *reserved = (Shop__V1__StockReserved *) service_unpack (
            S_PROGRAM, &shop__v1__stock_reserved__descriptor, event);
        if (reserved) {
            s_close (self, event, reserved->order_id, NULL);
            protobuf_c_message_free_unpacked (&reserved->base, NULL);
        }
    }
    else if (streq (type, "StockFailed")) {
        Shop__V1__StockFailed *failed = (Shop__V1__StockFailed *) service_unpack (
            S_PROGRAM, &shop__v1__stock_failed__descriptor, event);
        if (failed) {
            s_close (self, event, failed->order_id, "out of stock");
            protobuf_c_message_free_unpacked (&failed->base, NULL);
        }
    }
    //  Other types (PaymentCompleted, PaymentRefunded, ...) do not move an order.
}

static uint8_t *
s_reply_error (uint64_t request_id, const char *text, size_t *size_p)
{
    Shop__V1__ShopReply reply = SHOP__V1__SHOP_REPLY__INIT;
    reply.request_id = request_id;
    reply.body_case = SHOP__V1__SHOP_REPLY__BODY_ERROR;
    reply.error = (char *) text;
    return service_pack (&reply.base, size_p);
}

static int
s_request (void *arg, const uint8_t *data, size_t size, uint8_t **reply_p, size_t *reply_size_p)
{
    s_orders_t *self = (s_orders_t *) arg;
    Shop__V1__ShopRequest *request = shop__v1__shop_request__unpack (NULL, size, data);
    if (!request) {
        *reply_p = s_reply_error (0, "bad request: not a shop.v1.ShopRequest", reply_size_p);
        return 0;
    }
    if (request->body_case != SHOP__V1__SHOP_REQUEST__BODY_PLACE) {
        *reply_p =
            s_reply_error (request->request_id, "orders answers PlaceOrder only", reply_size_p);
        shop__v1__shop_request__free_unpacked (request, NULL);
        return 0;
    }
    Shop__V1__PlaceOrder *place = request->place;
    const char *problem = NULL;
    if (!*place->order_id || strlen (place->order_id) > 128)
        problem = "bad order: order_id must have 1 to 128 characters";
    else if (!*place->sku || place->quantity == 0)
        problem = "bad order: it needs a sku and a quantity of 1 or more";
    else if (place->total_cents <= 0)
        problem = "bad order: total_cents must be positive";
    else if (!*place->card)
        problem = "bad order: no card";
    if (problem) {
        *reply_p = s_reply_error (request->request_id, problem, reply_size_p);
        shop__v1__shop_request__free_unpacked (request, NULL);
        return 0;
    }
    Shop__V1__PlaceOrderAck ack = SHOP__V1__PLACE_ORDER_ACK__INIT;
    ack.order_id = place->order_id;
    s_order_t *order = (s_order_t *) zhashx_lookup (self->orders, place->order_id);
    if (order) {
        ack.duplicate = true;
        ack.seq = order->seq;
        ack.event_id = order->id;
    }
    else {
        Shop__V1__OrderPlaced placed = SHOP__V1__ORDER_PLACED__INIT;
        placed.order_id = place->order_id;
        placed.customer = place->customer;
        placed.sku = place->sku;
        placed.quantity = place->quantity;
        placed.total_cents = place->total_cents;
        placed.card = place->card;
        placed.currency = place->currency;
        //  Version 2 added the currency; an order without one is a version 1 event.
        uint32_t version = *place->currency ? 2 : 1;
        order = (s_order_t *) calloc (1, sizeof (s_order_t));
        order->total = place->total_cents;
        if (service_emit (self->service, "orders", "OrderPlaced", place->order_id, place->order_id,
                          NULL, version, &placed.base, order->id, &order->seq)) {
            free (order);
            *reply_p = s_reply_error (request->request_id, "storage failure", reply_size_p);
            shop__v1__shop_request__free_unpacked (request, NULL);
            return 0;
        }
        zhashx_insert (self->orders, place->order_id, order);
        ack.seq = order->seq;
        ack.event_id = order->id;
    }
    Shop__V1__ShopReply reply = SHOP__V1__SHOP_REPLY__INIT;
    reply.request_id = request->request_id;
    reply.body_case = SHOP__V1__SHOP_REPLY__BODY_PLACED;
    reply.placed = &ack;
    *reply_p = service_pack (&reply.base, reply_size_p);
    shop__v1__shop_request__free_unpacked (request, NULL);
    return 0;
}

//  --------------------------------------------------------------------------
//  orders place: the command-line client

typedef struct {
    int placed;     //  new orders acknowledged
    int duplicates; //  orders that existed already
    int errors;     //  refused orders
} s_place_result_t;

static void
s_place_reply (void *arg, const uint8_t *data, size_t size)
{
    s_place_result_t *result = (s_place_result_t *) arg;
    Shop__V1__ShopReply *reply = shop__v1__shop_reply__unpack (NULL, size, data);
    if (!reply) {
        fprintf (stderr, "orders place: a reply is not a shop.v1.ShopReply\n");
        result->errors++;
        return;
    }
    if (reply->body_case == SHOP__V1__SHOP_REPLY__BODY_PLACED) {
        printf ("%s %s seq %llu event %s\n", reply->placed->duplicate ? "duplicate" : "placed",
                reply->placed->order_id, (unsigned long long) reply->placed->seq,
                reply->placed->event_id);
        if (reply->placed->duplicate)
            result->duplicates++;
        else
            result->placed++;
    }
    else {
        fprintf (stderr, "orders place: request %llu refused: %s\n",
                 (unsigned long long) reply->request_id,
                 reply->body_case == SHOP__V1__SHOP_REPLY__BODY_ERROR ? reply->error : "?");
        result->errors++;
    }
    shop__v1__shop_reply__free_unpacked (reply, NULL);
}

//  Makes a ShopRequest from the fields of one order. NULL when they are bad.
static uint8_t *
s_place_request (uint64_t request_id, char **fields, int count, size_t *size_p)
{
    if (count < 6 || count > 7)
        return NULL;
    char *end;
    unsigned long quantity = strtoul (fields[3], &end, 10);
    if (*end || end == fields[3] || quantity == 0 || quantity > 1000000)
        return NULL;
    long long total = strtoll (fields[4], &end, 10);
    if (*end || end == fields[4] || total <= 0)
        return NULL;
    Shop__V1__PlaceOrder place = SHOP__V1__PLACE_ORDER__INIT;
    place.order_id = fields[0];
    place.customer = fields[1];
    place.sku = fields[2];
    place.quantity = (uint32_t) quantity;
    place.total_cents = total;
    place.card = fields[5];
    if (count == 7)
        place.currency = fields[6];
    Shop__V1__ShopRequest request = SHOP__V1__SHOP_REQUEST__INIT;
    request.request_id = request_id;
    request.body_case = SHOP__V1__SHOP_REQUEST__BODY_PLACE;
    request.place = &place;
    return service_pack (&request.base, size_p);
}

static int
s_place_main (int argc, char **argv)
{
    const char *endpoint = NULL, *data_dir = NULL, *file_name = NULL;
    int rate = 0;
    char *fields[8];
    int field_count = 0;
    for (int i = 2; i < argc; i++) {
        if (streq (argv[i], "--connect") && i + 1 < argc)
            endpoint = argv[++i];
        else if (streq (argv[i], "--data") && i + 1 < argc)
            data_dir = argv[++i];
        else if (streq (argv[i], "--file") && i + 1 < argc)
            file_name = argv[++i];
        else if (streq (argv[i], "--rate") && i + 1 < argc) {
            rate = atoi (argv[++i]);
            if (rate <= 0) {
                fprintf (stderr, "orders place: --rate wants orders per second, 1 or more\n");
                return 2;
            }
        }
        else if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf (stderr, "orders place: unknown option '%s'\n", argv[i]);
            return 2;
        }
        else if (field_count < 8)
            fields[field_count++] = argv[i];
        else
            field_count++;
    }
    if ((file_name != NULL) == (field_count > 0) || (field_count && field_count < 6)
        || field_count > 7) {
        fprintf (
            stderr,
            "usage: orders place (--connect ENDPOINT | --data DIR) ORDER CUSTOMER "
            "SKU QTY TOTAL_CENTS CARD [CURRENCY]\n"
            "       orders place (--connect ENDPOINT | --data DIR) --file FILE|- [--rate N]\n");
        return 2;
    }
    char *target = service_client_endpoint (endpoint, data_dir);
    if (!target)
        return 1;
    size_t count = 0, max = 0;
    uint8_t **requests = NULL;
    size_t *sizes = NULL;
    int status = 0;
    if (file_name) {
        FILE *file = streq (file_name, "-") ? stdin : fopen (file_name, "r");
        if (!file) {
            fprintf (stderr, "orders place: cannot read %s\n", file_name);
            free (target);
            return 1;
        }
        char line[1024];
        int line_number = 0;
        while (fgets (line, sizeof line, file)) {
            line_number++;
            char *words[8];
            int word_count = 0;
            for (char *word = strtok (line, " \t\r\n"); word; word = strtok (NULL, " \t\r\n"))
                if (word_count < 8)
                    words[word_count++] = word;
            if (word_count == 0 || words[0][0] == '#')
                continue;
            if (count == max) {
                max = max ? max * 2 : 256;
                requests = (uint8_t **) realloc (requests, max * sizeof *requests);
                sizes = (size_t *) realloc (sizes, max * sizeof *sizes);
            }
            requests[count] = s_place_request (count + 1, words, word_count, &sizes[count]);
            if (!requests[count]) {
                fprintf (stderr,
                         "orders place: %s:%d: expected ORDER CUSTOMER SKU QTY "
                         "TOTAL_CENTS CARD [CURRENCY]\n",
                         file_name, line_number);
                status = 2;
                break;
            }
            count++;
        }
        if (file != stdin)
            fclose (file);
    }
    else {
        requests = (uint8_t **) malloc (sizeof *requests);
        sizes = (size_t *) malloc (sizeof *sizes);
        requests[0] = s_place_request (1, fields, field_count, &sizes[0]);
        if (!requests[0]) {
            fprintf (stderr, "orders place: QTY and TOTAL_CENTS must be positive numbers\n");
            status = 2;
        }
        else
            count = 1;
    }
    s_place_result_t result = {0, 0, 0};
    if (status == 0 && count > 0
        && service_client_requests (target, requests, sizes, count, 64, rate, 10000, s_place_reply,
                                    &result))
        status = 1;
    if (status == 0 && result.errors)
        status = 1;
    for (size_t i = 0; i < count; i++)
        free (requests[i]);
    free (requests);
    free (sizes);
    free (target);
    fflush (stdout);
    if (file_name)
        fprintf (stderr, "orders place: %d placed, %d duplicates, %d refused\n", result.placed,
                 result.duplicates, result.errors);
    return status;
}

int
main (int argc, char **argv)
{
    if (argc > 1 && streq (argv[1], "place"))
        return s_place_main (argc, argv);
    service_config_t config = {.program = S_PROGRAM,
                               .usage = "       orders place (--connect ENDPOINT | --data DIR) "
                                        "ORDER CUSTOMER SKU QTY TOTAL_CENTS CARD [CURRENCY]\n"
                                        "       orders place (--connect ENDPOINT | --data DIR) "
                                        "--file FILE|- [--rate N]"};
    config.listen = "tcp://127.0.0.1:*";
    service_parse (&config, argc, argv, NULL, NULL);

    s_orders_t self = {0};
    self.orders = zhashx_new ();
    zhashx_set_destructor (self.orders, (zhashx_destructor_fn *) zstr_free);
    if (service_read_own_log (config.data_dir, "orders", s_fold, &self)) {
        zhashx_destroy (&self.orders);
        return 1;
    }
    size_t rebuilt = zhashx_size (self.orders);
    self.service = service_new (&config);
    if (!self.service) {
        zhashx_destroy (&self.orders);
        return 1;
    }
    fprintf (stderr, S_PROGRAM ": %zu orders rebuilt from the log\n", rebuilt);
    shoal_node_t *node = service_node (self.service);
    self.sub_payments = shoal_node_subscribe_durable (node, "orders.payments", "payments", NULL);
    self.sub_inventory = shoal_node_subscribe_durable (node, "orders.inventory", "inventory", NULL);
    int rc = service_run (self.service, s_handle, s_request, NULL, &self);
    service_destroy (&self.service);
    zhashx_destroy (&self.orders);
    return rc ? 1 : 0;
}
