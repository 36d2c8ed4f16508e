/*  test_shop - the shop saga as real processes on the loopback beacon:
    orders, payments, inventory and order-view, each a node of a mesh of
    the test's own (interface lo, its own beacon port and mesh name).

    1,000 orders with a deterministic mix of outcomes (a card ending in
    0000 is declined; sku "gold" has no stock, so its orders are charged,
    refunded and cancelled) must each end in exactly one terminal state,
    with the money balanced (charged - refunded = totals of the confirmed
    orders) and no order charged twice. Then 1,000 more while payments is
    SIGKILLed twice and restarted (and inventory and order-view once). The services' logs are read
   back with `shoal replay` (an independent path) and the payloads decoded here; correlation and
   causation ids must link every event to its order. Finally order-view is rebuilt by replay and
   must equal the live view. `shoal trace ID` finds one order's events across the services' logs in
   causation order. Schema evolution: half the orders carry a currency (OrderPlaced version 2); a
   consumer embedded here, on the same mesh, decodes every OrderPlaced both with the frozen version
   1 schema (tests/shop_v1.proto, an old consumer) and with the current one, and the services, new
    consumers, read version 1 events as euros.
    Bad input (a malformed request, a bad order, a foreign payload on the
    orders stream) gets an error or is skipped, and no service dies. */

#include "mesh_util.h"
#include "shoal.h"
#include "shop.pb-c.h"
#include "shop_v1.pb-c.h"
#include "tap.h"

#include <czmq.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_ORDERS 1000      //  orders per batch
#define S_SETTLE_S 120.0   //  longest wait for a batch to settle
#define S_RUN_TIMEOUT 60.0 //  longest run of a client
#define S_MAX_ORDERS (2 * S_ORDERS)

typedef enum { S_OK, S_DECLINED, S_NO_STOCK } s_outcome_t;

typedef struct {
    char id[32];         //  order id
    s_outcome_t outcome; //  what the saga must make of it
    int64_t total;       //  cents
    bool v2;             //  placed with a currency: OrderPlaced schema version 2
} s_order_t;

static s_order_t s_orders[S_MAX_ORDERS];
static int s_order_count = 0;
static char s_mesh[64];
static char s_beacon_port[16];
static mesh_service_t s_svc_orders = {.program = "orders"},
                      s_svc_payments = {.program = "payments"},
                      s_svc_inventory = {.program = "inventory"},
                      s_svc_view = {.program = "order-view"};

//  extra: one option, or an option and its value ("--stock gold=0").
static bool
s_start (mesh_service_t *svc, const char *extra)
{
    char option[64] = "", value[64] = "";
    int words = extra ? sscanf (extra, "%63s %63s", option, value) : 0;
    const char *argv[] = {words >= 1 ? option : NULL, words == 2 ? value : NULL, NULL};
    return mesh_service_start (svc, s_mesh, s_beacon_port, argv);
}

//  Stops with SIGTERM; the exit status.
static int
s_stop (mesh_service_t *svc)
{
    char *err = NULL;
    int status = mesh_service_stop (svc, &err);
    if (status != 0 && err)
        diag ("%s stopped with %d: %s", svc->program, status, err);
    else if (status == 0 && tap_contains (err, "redelivered"))
        diag ("%s", strstr (err, "payments: stopping") ? strstr (err, "payments: stopping") : err);
    free (err);
    return status;
}

static bool
s_alive (mesh_service_t *svc)
{
    return svc->proc && kill (svc->proc->pid, 0) == 0 && mesh_wait (svc->proc, 0) == -1;
}

//  Makes count orders named PREFIX-N into a file for `orders place --file`.
static const char *
s_make_orders (const char *prefix, int count)
{
    static char path[4200];
    snprintf (path, sizeof path, "%s/%s.orders", tap_tmpdir (), prefix);
    FILE *file = fopen (path, "w");
    if (!file)
        bail ("cannot write %s", path);
    for (int i = 0; i < count && s_order_count < S_MAX_ORDERS; i++) {
        s_order_t *order = &s_orders[s_order_count++];
        snprintf (order->id, sizeof order->id, "%s-%d", prefix, i);
        order->outcome = i % 10 == 3 ? S_DECLINED : i % 10 == 7 ? S_NO_STOCK : S_OK;
        order->total = 100 + (i * 37) % 5000;
        order->v2 = i % 2 == 1;
        //  Half the orders carry a currency: schema version 2 of OrderPlaced.
        fprintf (file, "%s customer-%d %s %d %" PRId64 " %s%s\n", order->id, i % 17,
                 order->outcome == S_NO_STOCK ? "gold" : "tea", 1 + i % 3, order->total,
                 order->outcome == S_DECLINED ? "4000000000000000" : "4111111111111111",
                 order->v2 ? " USD" : "");
    }
    fclose (file);
    return path;
}

static s_order_t *
s_find_order (const char *id)
{
    for (int i = 0; i < s_order_count; i++)
        if (streq (s_orders[i].id, id))
            return &s_orders[i];
    return NULL;
}

//  The view as `order-view query` prints it. Caller frees. NULL on failure.
static char *
s_query_view (void)
{
    const char *args[] = {"query", "--connect", s_svc_view.listen, NULL};
    return mesh_output ("order-view", args, S_RUN_TIMEOUT);
}

//  How many of the orders made so far the view shows settled: in their
//  expected terminal state, with the refund of a stock failure done.
static int
s_settled (const char *view, int *wrong)
{
    int settled = 0;
    *wrong = 0;
    const char *line = view;
    while (line && *line) {
        char id[64], status[32];
        long long charged = 0, refunded = 0;
        const char *c = strstr (line, " charged="), *r = strstr (line, " refunded=");
        if (sscanf (line, "%63s %31s", id, status) == 2 && c && r) {
            charged = strtoll (c + 9, NULL, 10);
            refunded = strtoll (r + 10, NULL, 10);
            s_order_t *order = s_find_order (id);
            if (order) {
                bool done = false, bad = false;
                if (order->outcome == S_OK) {
                    done = streq (status, "confirmed");
                    bad = streq (status, "cancelled");
                }
                else if (order->outcome == S_DECLINED) {
                    done = streq (status, "cancelled") && charged == 0;
                    bad = streq (status, "confirmed") || charged != 0;
                }
                else {
                    done = streq (status, "cancelled") && charged == order->total
                           && refunded == order->total;
                    bad = streq (status, "confirmed");
                }
                settled += done;
                *wrong += bad;
            }
        }
        line = strchr (line, '\n');
        line = line ? line + 1 : NULL;
    }
    return settled;
}

//  Orders with id prefix that the view shows past "placed".
static int
s_moved (const char *view, const char *prefix)
{
    int moved = 0;
    for (const char *line = view; line && *line;) {
        const char *space = strchr (line, ' ');
        if (strncmp (line, prefix, strlen (prefix)) == 0 && space
            && strncmp (space, " placed ", 8) != 0)
            moved++;
        line = strchr (line, '\n');
        line = line ? line + 1 : NULL;
    }
    return moved;
}

//  Waits until the view shows every order settled. True when it does.
static bool
s_wait_settled (const char *what)
{
    double deadline = tap_now () + S_SETTLE_S, start = tap_now ();
    int settled = 0, wrong = 0;
    while (tap_now () < deadline) {
        char *view = s_query_view ();
        settled = view ? s_settled (view, &wrong) : 0;
        free (view);
        if (settled == s_order_count)
            break;
        usleep (300000);
    }
    diag ("%s: %d of %d orders settled in the view after %.1f s (%d in a wrong state)", what,
          settled, s_order_count, tap_now () - start, wrong);
    return settled == s_order_count && wrong == 0;
}

//  --------------------------------------------------------------------------
//  Reading the services' logs back with `shoal replay` and checking them

typedef struct {
    int placed;       //  OrderPlaced events
    int terminal;     //  OrderConfirmed + OrderCancelled
    bool confirmed;   //  an OrderConfirmed seen
    char reason[64];  //  of the OrderCancelled
    int charges;      //  PaymentCompleted events
    int64_t charged;  //  their amounts
    int declines;     //  PaymentFailed events
    int refunds;      //  PaymentRefunded events
    int64_t refunded; //  their amounts
    int reservations; //  StockReserved + StockFailed
    uint32_t v2;      //  OrderPlaced with schema_version 2 and a currency
} s_tally_t;

typedef struct {
    s_tally_t tally[S_MAX_ORDERS]; //  per order, index as s_orders
    zhashx_t *ids;                 //  event id -> correlation id (strdup'd)
    zlist_t *causes;               //  "correlation causation" of every caused event
    int events;                    //  events read
    int foreign;                   //  events whose payload is not the shop message
    int unknown;                   //  events of orders the test did not make
} s_audit_t;

static void
s_audit_event (void *arg, json_t *event, const uint8_t *data, size_t size)
{
    s_audit_t *audit = (s_audit_t *) arg;
    const char *type = json_get_string (event, "type");
    const char *key = json_get_string (event, "key");
    const char *correlation = json_get_string (event, "correlation_id");
    const char *causation = json_get_string (event, "causation_id");
    const char *id = json_get_string (event, "id");
    if (!type || !key || !correlation || !causation || !id)
        return;
    audit->events++;
    s_order_t *order = s_find_order (key);
    if (!data || !order) {
        if (!data)
            audit->foreign++;
        else
            audit->unknown++;
        return;
    }
    s_tally_t *tally = &audit->tally[order - s_orders];
    zhashx_update (audit->ids, id, strdup (correlation));
    if (!streq (type, "OrderPlaced")) {
        char line[200];
        snprintf (line, sizeof line, "%s %s", correlation, causation);
        zlist_append (audit->causes, strdup (line));
    }
    if (!streq (correlation, key))
        audit->unknown++;
    if (streq (type, "OrderPlaced")) {
        Shop__V1__OrderPlaced *placed = shop__v1__order_placed__unpack (NULL, size, data);
        if (placed) {
            tally->placed++;
            if (json_get_u64 (event, "schema_version", 0) == 2 && streq (placed->currency, "USD"))
                tally->v2++;
            shop__v1__order_placed__free_unpacked (placed, NULL);
        }
        else
            audit->foreign++;
    }
    else if (streq (type, "OrderConfirmed")) {
        tally->terminal++;
        tally->confirmed = true;
    }
    else if (streq (type, "OrderCancelled")) {
        Shop__V1__OrderCancelled *cancelled = shop__v1__order_cancelled__unpack (NULL, size, data);
        tally->terminal++;
        if (cancelled) {
            snprintf (tally->reason, sizeof tally->reason, "%s", cancelled->reason);
            shop__v1__order_cancelled__free_unpacked (cancelled, NULL);
        }
    }
    else if (streq (type, "PaymentCompleted")) {
        Shop__V1__PaymentCompleted *done = shop__v1__payment_completed__unpack (NULL, size, data);
        if (done) {
            tally->charges++;
            tally->charged += done->amount_cents;
            shop__v1__payment_completed__free_unpacked (done, NULL);
        }
    }
    else if (streq (type, "PaymentFailed"))
        tally->declines++;
    else if (streq (type, "PaymentRefunded")) {
        Shop__V1__PaymentRefunded *refund = shop__v1__payment_refunded__unpack (NULL, size, data);
        if (refund) {
            tally->refunds++;
            tally->refunded += refund->amount_cents;
            shop__v1__payment_refunded__free_unpacked (refund, NULL);
        }
    }
    else if (streq (type, "StockReserved") || streq (type, "StockFailed"))
        tally->reservations++;
}

//  Reads one stream of one service with `shoal --json replay`. False on failure.
static bool
s_audit_stream (s_audit_t *audit, mesh_service_t *svc, const char *stream)
{
    return mesh_replay_json (svc->router, svc->id, stream, S_RUN_TIMEOUT, s_audit_event, audit);
}

//  Every check of the saga over the orders made so far.
static void
s_check_saga (const char *what)
{
    s_audit_t *audit = (s_audit_t *) calloc (1, sizeof (s_audit_t));
    audit->ids = zhashx_new ();
    zhashx_set_destructor (audit->ids, (zhashx_destructor_fn *) zstr_free);
    audit->causes = zlist_new ();
    zlist_autofree (audit->causes);
    bool read = s_audit_stream (audit, &s_svc_orders, "orders")
                && s_audit_stream (audit, &s_svc_payments, "payments")
                && s_audit_stream (audit, &s_svc_inventory, "inventory");
    ok (read, "%s: the logs of orders, payments and inventory are read back with shoal replay",
        what);
    int placed_once = 0, one_terminal = 0, right_terminal = 0, double_charges = 0, refunds_ok = 0,
        v2 = 0, v2_expected = 0, shown = 0;
    int64_t charged = 0, refunded = 0, confirmed_totals = 0;
    for (int i = 0; i < s_order_count; i++) {
        s_tally_t *tally = &audit->tally[i];
        s_order_t *order = &s_orders[i];
        placed_once += tally->placed == 1;
        one_terminal += tally->terminal == 1;
        bool right = order->outcome == S_OK
                         ? tally->confirmed && tally->charges == 1 && tally->reservations == 1
                     : order->outcome == S_DECLINED
                         ? !tally->confirmed && tally->charges == 0 && tally->declines == 1
                               && tap_contains (tally->reason, "declined")
                         : !tally->confirmed && tally->charges == 1 && tally->reservations == 1
                               && tap_contains (tally->reason, "out of stock");
        right_terminal += right;
        if (!right && shown++ < 5)
            diag ("%s: order %s: placed %d terminal %d confirmed %d charges %d declines %d "
                  "refunds %d reason '%s'",
                  what, order->id, tally->placed, tally->terminal, tally->confirmed, tally->charges,
                  tally->declines, tally->refunds, tally->reason);
        double_charges += tally->charges > 1;
        refunds_ok += order->outcome == S_NO_STOCK
                          ? tally->refunds == 1 && tally->refunded == order->total
                          : tally->refunds == 0;
        charged += tally->charged;
        refunded += tally->refunded;
        if (tally->confirmed)
            confirmed_totals += order->total;
        v2 += tally->v2 == 1;
        v2_expected += order->v2;
    }
    is_int (placed_once, s_order_count, "%s: every order was placed exactly once", what);
    is_int (one_terminal, s_order_count, "%s: every order ends in exactly one terminal state",
            what);
    is_int (right_terminal, s_order_count,
            "%s: and it is the expected one (confirmed, declined, or out of stock)", what);
    is_int (double_charges, 0, "%s: no order was charged twice", what);
    is_int (refunds_ok, s_order_count,
            "%s: each out-of-stock order was refunded once, in full; no other order was", what);
    ok (charged - refunded == confirmed_totals && confirmed_totals > 0,
        "%s: money balances: charged %" PRId64 " - refunded %" PRId64 " = %" PRId64
        " = totals of the confirmed orders",
        what, charged, refunded, confirmed_totals);
    is_int (v2, v2_expected,
            "%s: the orders with a currency were recorded as OrderPlaced schema version 2", what);
    //  Correlation and causation: every caused event names an event of its own order.
    int linked = 0, total_causes = 0;
    for (char *line = (char *) zlist_first (audit->causes); line;
         line = (char *) zlist_next (audit->causes)) {
        char correlation[64], causation[64];
        total_causes++;
        if (sscanf (line, "%63s %63s", correlation, causation) == 2) {
            const char *cause_correlation = (const char *) zhashx_lookup (audit->ids, causation);
            linked += cause_correlation && streq (cause_correlation, correlation);
        }
    }
    ok (total_causes > 0 && linked == total_causes,
        "%s: each of the %d caused events names its cause, an event of the same order "
        "(%d linked)",
        what, total_causes, linked);
    is_int (audit->unknown, 0, "%s: every event's correlation id is its order", what);
    diag ("%s: %d events read, %d with a foreign payload", what, audit->events, audit->foreign);
    zhashx_destroy (&audit->ids);
    zlist_destroy (&audit->causes);
    free (audit);
}

//  --------------------------------------------------------------------------

static int
s_place (const char *path, char **err)
{
    const char *argv[] = {
        mesh_bin ("orders"), "place", "--connect", s_svc_orders.listen, "--file", path, NULL};
    return mesh_run (argv, NULL, NULL, S_RUN_TIMEOUT, NULL, err);
}

static void
test_bad_input (void)
{
    //  A frame that is no ShopRequest, to each service ROUTER.
    zsock_t *dealer = zsock_new_dealer (s_svc_orders.listen);
    zstr_send (dealer, "not a request");
    zsock_set_rcvtimeo (dealer, 5000);
    zframe_t *frame = zframe_recv (dealer);
    Shop__V1__ShopReply *reply =
        frame ? shop__v1__shop_reply__unpack (NULL, zframe_size (frame), zframe_data (frame))
              : NULL;
    ok (reply && reply->body_case == SHOP__V1__SHOP_REPLY__BODY_ERROR
            && tap_contains (reply->error, "bad request"),
        "a malformed request to orders gets an error reply (%s)", reply ? reply->error : "none");
    if (reply)
        shop__v1__shop_reply__free_unpacked (reply, NULL);
    zframe_destroy (&frame);
    zsock_destroy (&dealer);

    char *err = NULL;
    char id[200];
    memset (id, 'x', 150);
    id[150] = 0;
    const char *argv[] = {mesh_bin ("orders"),
                          "place",
                          "--connect",
                          s_svc_orders.listen,
                          id,
                          "eve",
                          "tea",
                          "1",
                          "100",
                          "4111111111111111",
                          NULL};
    int rc = mesh_run (argv, NULL, NULL, S_RUN_TIMEOUT, NULL, &err);
    ok (rc == 1 && tap_contains (err, "order_id"), "an order with a 150-character id is refused");
    free (err);
    const char *usage[] = {mesh_bin ("orders"),
                           "place",
                           "--connect",
                           s_svc_orders.listen,
                           "o",
                           "eve",
                           "tea",
                           "zero",
                           "100",
                           "4111111111111111",
                           NULL};
    rc = mesh_run (usage, NULL, NULL, S_RUN_TIMEOUT, NULL, &err);
    ok (rc == 2 && tap_contains (err, "QTY"), "a quantity that is no number is a usage error");
    free (err);

    //  A foreign payload on the orders stream: every consumer skips it.
    const char *pub[] = {mesh_bin ("shoal"),
                         "--node",
                         s_svc_orders.router,
                         "pub",
                         "orders",
                         "OrderPlaced",
                         "--key",
                         "x-1",
                         "--json-payload",
                         "{\"not\":\"shop\"}",
                         NULL};
    rc = mesh_run (pub, NULL, NULL, S_RUN_TIMEOUT, NULL, &err);
    is_int (rc, 0, "a foreign OrderPlaced is published on the orders stream");
    free (err);
}

//  Runs `shoal --json trace id` through the orders node; the event types
//  in the order printed go to types (space-separated), and *causal counts
//  the events whose cause was printed before them. The exit status.
static int
s_trace (const char *id, char *types, size_t size, int *count, int *causal, char *first_id)
{
    const char *argv[] = {
        mesh_bin ("shoal"), "--node", s_svc_orders.router, "--json", "trace", id, NULL};
    char *out = NULL;
    int rc = mesh_run (argv, NULL, NULL, S_RUN_TIMEOUT, &out, NULL);
    zhashx_t *ids = zhashx_new ();
    *count = *causal = 0;
    types[0] = 0;
    for (const char *line = out; rc == 0 && line && *line;) {
        const char *eol = strchr (line, '\n');
        size_t length = eol ? (size_t) (eol - line) : strlen (line);
        json_t *event = json_parse (line, length);
        const char *type = json_get_string (event, "type");
        const char *event_id = json_get_string (event, "id");
        const char *cause = json_get_string (event, "causation_id");
        if (type && event_id && cause) {
            (*count)++;
            *causal += *cause ? zhashx_lookup (ids, cause) != NULL : *count == 1;
            zhashx_update (ids, event_id, (void *) 1);
            if (first_id && *count == 2)
                snprintf (first_id, 33, "%s", event_id);
            size_t used = strlen (types);
            snprintf (types + used, size - used, "%s%s", used ? " " : "", type);
        }
        json_free (event);
        line = eol ? eol + 1 : NULL;
    }
    zhashx_destroy (&ids);
    free (out);
    return rc;
}

static void
test_trace (void)
{
    char types[512], second[33] = "";
    int count = 0, causal = 0;
    int rc = s_trace ("a-7", types, sizeof types, &count, &causal, second);
    ok (rc == 0 && count == 5 && causal == 5,
        "shoal trace a-7 finds the 5 events of an out-of-stock order, each after its cause "
        "(%d events, %d after their cause)",
        count, causal);
    ok (strncmp (types, "OrderPlaced PaymentCompleted StockFailed ", 41) == 0
            && strstr (types, "PaymentRefunded") && strstr (types, "OrderCancelled"),
        "in causation order: %s", types);
    char again[512];
    rc = s_trace (second, again, sizeof again, &count, &causal, NULL);
    ok (rc == 0 && streq (again, types),
        "trace by the event id of its PaymentCompleted finds the same chain");
    rc = s_trace ("b-3", types, sizeof types, &count, &causal, NULL);
    ok (rc == 0 && streq (types, "OrderPlaced PaymentFailed OrderCancelled") && causal == 3,
        "a declined order's trace: %s", types);
    rc = s_trace ("no-such-order", types, sizeof types, &count, &causal, NULL);
    is_int (rc, 1, "trace of an unknown id exits 1");
}

//  An old and a new consumer of OrderPlaced, as a library node on the mesh.
static void
test_schema_versions (void)
{
    shoal_node_config_t config;
    shoal_node_config_defaults (&config);
    config.name = "schema-check";
    config.mesh = s_mesh;
    config.data_dir = tap_path ("schema-check");
    config.interface = "lo";
    config.beacon_port = atoi (s_beacon_port);
    config.beacon_interval_ms = 200;
    shoal_node_t *node = shoal_node_new (&config, NULL);
    ok (node != NULL, "a consumer node joins the mesh (%s)",
        node ? "ok" : shoal_node_start_error ());
    if (!node)
        return;
    shoal_from_t from = {.kind = SHOAL_FROM_BEGINNING};
    shoal_node_subscribe (node, "orders", "OrderPlaced", &from);
    int seen = 0, old_ok = 0, old_ignored = 0, new_ok = 0, versions_right = 0, foreign = 0;
    double deadline = tap_now () + 60;
    while (seen < s_order_count && tap_now () < deadline) {
        shoal_event_t *event = shoal_node_recv (node, 200, NULL);
        if (!event)
            continue;
        s_order_t *order = s_find_order (shoal_event_key (event));
        if (!order) {
            foreign++;
            shoal_event_destroy (&event);
            continue;
        }
        seen++;
        const uint8_t *payload = shoal_event_payload (event);
        size_t size = shoal_event_payload_size (event);
        uint32_t version = shoal_event_schema_version (event);
        versions_right += version == (order->v2 ? 2u : 1u);
        //  The old consumer: version 1 of the schema.
        ShopSchema1__OrderPlaced *old = shop_schema1__order_placed__unpack (NULL, size, payload);
        if (old && streq (old->order_id, order->id) && old->total_cents == order->total) {
            old_ok++;
            //  A version 2 event's currency is a field it does not know, and skips.
            old_ignored +=
                order->v2 ? old->base.n_unknown_fields == 1 : old->base.n_unknown_fields == 0;
        }
        if (old)
            shop_schema1__order_placed__free_unpacked (old, NULL);
        //  The new consumer: version 1 events mean euros.
        Shop__V1__OrderPlaced *now = shop__v1__order_placed__unpack (NULL, size, payload);
        const char *currency = now && *now->currency ? now->currency : "EUR";
        if (now && streq (now->order_id, order->id) && now->total_cents == order->total
            && streq (currency, order->v2 ? "USD" : "EUR"))
            new_ok++;
        if (now)
            shop__v1__order_placed__free_unpacked (now, NULL);
        shoal_event_destroy (&event);
    }
    is_int (seen, s_order_count, "the consumer got every OrderPlaced of both runs");
    is_int (versions_right, s_order_count,
            "each is schema version 2 when it has a currency, else version 1");
    is_int (old_ok, s_order_count,
            "a version 1 consumer decodes every OrderPlaced, version 1 and 2 alike");
    is_int (old_ignored, s_order_count,
            "it sees the version 2 currency as one unknown field and goes on");
    is_int (new_ok, s_order_count,
            "a version 2 consumer decodes both, reading version 1 events as euros");
    diag ("%d OrderPlaced of other producers skipped", foreign);
    shoal_node_destroy (&node);

    //  The services are new consumers too: the view shows the currencies.
    char *view = s_query_view ();
    int currencies = 0;
    for (int i = 0; i < s_order_count; i++) {
        char needle[128];
        snprintf (needle, sizeof needle, "\n%.31s ", s_orders[i].id);
        const char *line = view ? strstr (view, needle) : NULL;
        if (!line && view && strncmp (view, needle + 1, strlen (needle + 1)) == 0)
            line = view - 1;
        const char *eol = line ? strchr (line + 1, '\n') : NULL;
        const char *currency = line ? strstr (line + 1, " currency=") : NULL;
        if (currency && (!eol || currency < eol))
            currencies += strncmp (currency + 10, s_orders[i].v2 ? "USD" : "EUR", 3) == 0;
    }
    is_int (currencies, s_order_count,
            "order-view shows USD for the version 2 orders and EUR for the version 1 ones");
    free (view);
}

int
main (void)
{
    plan_lazy ();
    zsys_init ();
    zsys_handler_set (NULL);
    snprintf (s_mesh, sizeof s_mesh, "shop-test-%d", (int) getpid ());
    snprintf (s_beacon_port, sizeof s_beacon_port, "%d", 20000 + (int) (getpid () % 20000));
    double started = tap_now ();

    bool up = s_start (&s_svc_orders, NULL) && s_start (&s_svc_payments, NULL)
              && s_start (&s_svc_inventory, "--stock gold=0") && s_start (&s_svc_view, NULL);
    ok (up, "orders, payments, inventory and order-view started on the loopback beacon");
    if (!up)
        return done_testing ();
    test_bad_input ();

    char *err = NULL;
    double t0 = tap_now ();
    int rc = s_place (s_make_orders ("a", S_ORDERS), &err);
    ok (rc == 0 && tap_contains (err, "1000 placed"),
        "1000 orders placed through the orders ROUTER");
    if (rc)
        diag ("orders place: %s", err);
    free (err);
    ok (s_wait_settled ("run 1"), "run 1: order-view shows every order settled as expected");
    diag ("run 1: 1000 orders through the saga in %.1f s", tap_now () - t0);
    s_check_saga ("run 1");

    //  Run 2: payments is killed twice while orders flow.
    t0 = tap_now ();
    const char *path = s_make_orders ("b", S_ORDERS);
    //  At most 400 orders a second, so that the kills come while orders flow.
    const char *argv[] = {mesh_bin ("orders"),
                          "place",
                          "--connect",
                          s_svc_orders.listen,
                          "--file",
                          path,
                          "--rate",
                          "400",
                          NULL};
    mesh_proc_t *placer = mesh_start (argv, NULL, false);
    int kills = 0, at_kill[2] = {0, 0};
    bool placing[2] = {false, false};
    for (int round = 0; round < 2; round++) {
        //  Kill payments once the view shows some of the new orders past
        //  "placed": the first time at once, the second when 400 are.
        int target = round == 0 ? 1 : 400;
        double deadline = tap_now () + 30;
        while (tap_now () < deadline) {
            char *view = s_query_view ();
            at_kill[round] = s_moved (view, "b-");
            free (view);
            if (at_kill[round] >= target)
                break;
            usleep (5000);
        }
        placing[round] = mesh_wait (placer, 0) == -1;
        mesh_signal (s_svc_payments.proc, SIGKILL, false);
        if (mesh_wait (s_svc_payments.proc, 10) == 128 + SIGKILL)
            kills++;
        mesh_stop (&s_svc_payments.proc);
        usleep (300000);
        if (!s_start (&s_svc_payments, NULL))
            break;
    }
    is_int (kills, 2, "payments was SIGKILLed twice and restarted");
    ok ((placing[0] || at_kill[0] < S_ORDERS) && (placing[1] || at_kill[1] < S_ORDERS),
        "both kills came mid-run: orders still %s and %s, the view showing %d and %d of the %d "
        "new orders moved on",
        placing[0] ? "flowing" : "settling", placing[1] ? "flowing" : "settling", at_kill[0],
        at_kill[1], S_ORDERS);
    //  inventory: its decisions are rebuilt from its log, none is made twice.
    bool flowing = mesh_wait (placer, 0) == -1;
    mesh_signal (s_svc_inventory.proc, SIGKILL, false);
    bool inventory_killed = mesh_wait (s_svc_inventory.proc, 10) == 128 + SIGKILL;
    mesh_stop (&s_svc_inventory.proc);
    ok (inventory_killed && s_start (&s_svc_inventory, "--stock gold=0"),
        "inventory was SIGKILLed and restarted (orders still flowing: %s)", flowing ? "yes" : "no");
    //  The read model too: killed, it resumes from its view file and cursors.
    mesh_signal (s_svc_view.proc, SIGKILL, false);
    bool view_killed = mesh_wait (s_svc_view.proc, 10) == 128 + SIGKILL;
    mesh_stop (&s_svc_view.proc);
    bool view_back = s_start (&s_svc_view, NULL);
    err = view_back ? mesh_stderr (s_svc_view.proc) : NULL;
    char said[128] = "?";
    if (err && strstr (err, "started with"))
        snprintf (said, sizeof said, "%.*s", (int) strcspn (strstr (err, "started with"), "\n"),
                  strstr (err, "started with"));
    ok (view_killed && view_back && tap_contains (err, "started with ")
            && !tap_contains (err, "started with 0 orders"),
        "order-view was SIGKILLed and restarted from its saved view (%s)", said);
    free (err);
    rc = mesh_wait (placer, S_RUN_TIMEOUT);
    err = mesh_stderr (placer);
    ok (rc == 0 && tap_contains (err, "1000 placed"), "1000 more orders placed meanwhile");
    if (rc)
        diag ("orders place: %s", err);
    free (err);
    mesh_stop (&placer);
    ok (s_wait_settled ("run 2"), "run 2: every order of both runs settled as expected");
    diag ("run 2: 1000 orders with two payments kills in %.1f s", tap_now () - t0);
    s_check_saga ("run 2 (payments killed)");
    err = mesh_stderr (s_svc_payments.proc);
    ok (tap_contains (err, "payments rebuilt from the log"),
        "the restarted payments rebuilt its state from its log");
    free (err);

    test_schema_versions ();
    test_trace ();

    //  order-view: drop the view and rebuild it by replay.
    char *live = s_query_view ();
    ok (live && tap_contains (live, "b-999 "), "the live view holds every order");
    is_int (s_stop (&s_svc_view), 0, "order-view stops cleanly on SIGTERM");
    t0 = tap_now ();
    bool rebuilt = false;
    if (s_start (&s_svc_view, "--rebuild")) {
        double deadline = tap_now () + S_SETTLE_S;
        while (!rebuilt && tap_now () < deadline) {
            char *view = s_query_view ();
            rebuilt = view && live && streq (view, live);
            free (view);
            if (!rebuilt)
                usleep (300000);
        }
    }
    ok (rebuilt, "order-view --rebuild replays every stream into a view equal to the live one");
    diag ("rebuild took %.1f s", tap_now () - t0);
    err = mesh_stderr (s_svc_view.proc);
    ok (tap_contains (err, "rebuilding with 0 orders"), "the rebuild started from an empty view");
    free (err);
    free (live);

    ok (s_alive (&s_svc_orders) && s_alive (&s_svc_payments) && s_alive (&s_svc_inventory)
            && s_alive (&s_svc_view),
        "no service died of the bad input");
    err = mesh_stderr (s_svc_view.proc);
    ok (tap_contains (err, "skipped ") && tap_contains (err, "is not a shop.v1.OrderPlaced"),
        "the foreign payload was skipped with a message naming it");
    free (err);
    int stops = 0;
    mesh_service_t *all[] = {&s_svc_view, &s_svc_inventory, &s_svc_payments, &s_svc_orders};
    for (int i = 0; i < 4; i++)
        stops += s_stop (all[i]) == 0;
    is_int (stops, 4, "every service stops cleanly on SIGTERM");
    diag ("test_shop took %.1f s", tap_now () - started);
    return done_testing ();
}
