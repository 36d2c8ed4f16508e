/*  =========================================================================
    order-view - the CQRS read model of the shop: orders and their status

    A durable consumer of the streams "orders", "payments" and
    "inventory" that keeps one row per order (customer, sku, total, what
    was charged and refunded, status) and answers OrderQuery requests on
    its ROUTER (--listen; `order-view query` is the command-line client).

    Each event sets facts of its order (placed, paid, declined, reserved,
    out of stock, refunded, confirmed, cancelled) and the status is
    derived from the facts, not from the order the events came in: the
    streams of different origins interleave differently live and in a
    replay, and the view must come out the same either way. Setting a fact
    twice changes nothing, so redelivered events are harmless.

    The view is kept in DIR/view.dat, replaced atomically (temp file,
    fsync, rename) before the events that changed it are acknowledged, at
    most every 200 ms. `--rebuild` drops the file and the consumer cursors
    and builds the view again by replaying every stream from the start.

    view.dat: a first line "shop-view 1 EVENTS_APPLIED", then one line per
    order, fields separated by tabs:
        ORDER FACTS CUSTOMER SKU QUANTITY TOTAL CHARGED REFUNDED CURRENCY REASON

        order-view --data DIR --listen ENDPOINT [--rebuild] [common options]
        order-view query (--connect ENDPOINT | --data DIR) [ORDER]
    ========================================================================= */

#include "service.h"
#include "shop.pb-c.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_PROGRAM "order-view"
#define S_SAVE_MS 200 //  longest time applied events wait for the view file

//  Facts of an order, one bit each.
#define S_PLACED 1
#define S_PAID 2
#define S_DECLINED 4
#define S_RESERVED 8
#define S_NO_STOCK 16
#define S_REFUNDED 32
#define S_CONFIRMED 64
#define S_CANCELLED 128

typedef struct {
    unsigned facts;    //  S_* bits
    char *customer;    //  from OrderPlaced
    char *sku;         //  from OrderPlaced
    uint32_t quantity; //  from OrderPlaced
    int64_t total;     //  cents, from OrderPlaced
    int64_t charged;   //  cents, from PaymentCompleted
    int64_t refunded;  //  cents, from PaymentRefunded
    char *currency;    //  from OrderPlaced (v2) or PaymentCompleted
    char *reason;      //  from OrderCancelled
} s_row_t;

typedef struct {
    service_t *service; //  node and loop
    zhashx_t *rows;     //  order id -> s_row_t
    char path[4200];    //  DIR/view.dat
    uint64_t applied;   //  events applied to the view
    bool dirty;         //  applied events not yet in the file
    int64_t saved_at;   //  monotonic ms of the last save
} s_view_t;

static void
s_row_free (void **item_p)
{
    s_row_t *row = (s_row_t *) *item_p;
    if (row) {
        free (row->customer);
        free (row->sku);
        free (row->currency);
        free (row->reason);
        free (row);
        *item_p = NULL;
    }
}

static s_row_t *
s_row (s_view_t *self, const char *order_id)
{
    s_row_t *row = (s_row_t *) zhashx_lookup (self->rows, order_id);
    if (!row) {
        row = (s_row_t *) calloc (1, sizeof (s_row_t));
        row->customer = strdup ("");
        row->sku = strdup ("");
        row->currency = strdup ("");
        row->reason = strdup ("");
        zhashx_insert (self->rows, order_id, row);
    }
    return row;
}

static void
s_set (char **field, const char *value)
{
    free (*field);
    *field = strdup (value ? value : "");
    //  Tabs and newlines would break the file's lines.
    for (char *p = *field; *p; p++)
        if (*p == '\t' || *p == '\n' || *p == '\r')
            *p = ' ';
}

static const char *
s_status (unsigned facts)
{
    return facts & S_CANCELLED   ? "cancelled"
           : facts & S_CONFIRMED ? "confirmed"
           : facts & S_NO_STOCK  ? "stock-failed"
           : facts & S_RESERVED  ? "reserved"
           : facts & S_DECLINED  ? "payment-failed"
           : facts & S_PAID      ? "paid"
           : facts & S_PLACED    ? "placed"
                                 : "unknown";
}

//  Applies one event of any of the three streams.
static void
s_apply (s_view_t *self, const shoal_event_t *event)
{
    const char *type = shoal_event_type (event);
    const ProtobufCMessageDescriptor *descriptor =
        streq (type, "OrderPlaced")        ? &shop__v1__order_placed__descriptor
        : streq (type, "OrderConfirmed")   ? &shop__v1__order_confirmed__descriptor
        : streq (type, "OrderCancelled")   ? &shop__v1__order_cancelled__descriptor
        : streq (type, "PaymentCompleted") ? &shop__v1__payment_completed__descriptor
        : streq (type, "PaymentFailed")    ? &shop__v1__payment_failed__descriptor
        : streq (type, "PaymentRefunded")  ? &shop__v1__payment_refunded__descriptor
        : streq (type, "StockReserved")    ? &shop__v1__stock_reserved__descriptor
        : streq (type, "StockFailed")      ? &shop__v1__stock_failed__descriptor
                                           : NULL;
    if (!descriptor)
        return;
    ProtobufCMessage *message = service_unpack (S_PROGRAM, descriptor, event);
    if (!message)
        return;
    //  Every shop event has the order id as its field 1.
    const char *order_id = *(char **) ((char *) message + descriptor->fields[0].offset);
    if (!order_id || !*order_id) {
        protobuf_c_message_free_unpacked (message, NULL);
        return;
    }
    s_row_t *row = s_row (self, order_id);
    if (descriptor == &shop__v1__order_placed__descriptor) {
        Shop__V1__OrderPlaced *placed = (Shop__V1__OrderPlaced *) message;
        row->facts |= S_PLACED;
        s_set (&row->customer, placed->customer);
        s_set (&row->sku, placed->sku);
        row->quantity = placed->quantity;
        row->total = placed->total_cents;
        //  Schema version 1 had no currency: euros.
        s_set (&row->currency, *placed->currency ? placed->currency : "EUR");
    }
    else if (descriptor == &shop__v1__order_confirmed__descriptor)
        row->facts |= S_CONFIRMED;
    else if (descriptor == &shop__v1__order_cancelled__descriptor) {
        row->facts |= S_CANCELLED;
        s_set (&row->reason, ((Shop__V1__OrderCancelled *) message)->reason);
    }
    else if (descriptor == &shop__v1__payment_completed__descriptor) {
        row->facts |= S_PAID;
        row->charged = ((Shop__V1__PaymentCompleted *) message)->amount_cents;
    }
    else if (descriptor == &shop__v1__payment_failed__descriptor)
        row->facts |= S_DECLINED;
    else if (descriptor == &shop__v1__payment_refunded__descriptor) {
        row->facts |= S_REFUNDED;
        row->refunded = ((Shop__V1__PaymentRefunded *) message)->amount_cents;
    }
    else if (descriptor == &shop__v1__stock_reserved__descriptor)
        row->facts |= S_RESERVED;
    else if (descriptor == &shop__v1__stock_failed__descriptor)
        row->facts |= S_NO_STOCK;
    protobuf_c_message_free_unpacked (message, NULL);
}

static void
s_handle (void *arg, int subscription, const shoal_event_t *event)
{
    (void) subscription;
    s_view_t *self = (s_view_t *) arg;
    s_apply (self, event);
    self->applied++;
    self->dirty = true;
}

//  Writes the view file atomically. 0, or -1.
static int
s_save (s_view_t *self)
{
    char temp[4300];
    snprintf (temp, sizeof temp, "%s.tmp", self->path);
    FILE *file = fopen (temp, "w");
    if (!file)
        return -1;
    fprintf (file, "shop-view 1 %llu\n", (unsigned long long) self->applied);
    for (s_row_t *row = (s_row_t *) zhashx_first (self->rows); row;
         row = (s_row_t *) zhashx_next (self->rows))
        fprintf (file, "%s\t%u\t%s\t%s\t%u\t%lld\t%lld\t%lld\t%s\t%s\n",
                 (const char *) zhashx_cursor (self->rows), row->facts, row->customer, row->sku,
                 row->quantity, (long long) row->total, (long long) row->charged,
                 (long long) row->refunded, row->currency, row->reason);
    int rc = fflush (file) == 0 && fsync (fileno (file)) == 0 ? 0 : -1;
    if (fclose (file) != 0)
        rc = -1;
    if (rc == 0 && rename (temp, self->path) != 0)
        rc = -1;
    if (rc)
        fprintf (stderr, S_PROGRAM ": cannot write %s\n", self->path);
    return rc;
}

//  Loads the view file, when there is one. 0, or -1 when it is damaged.
static int
s_load (s_view_t *self)
{
    FILE *file = fopen (self->path, "r");
    if (!file)
        return 0;
    char line[4096];
    unsigned long long applied = 0;
    int rc = 0;
    if (!fgets (line, sizeof line, file) || sscanf (line, "shop-view 1 %llu", &applied) != 1)
        rc = -1;
    self->applied = applied;
    while (rc == 0 && fgets (line, sizeof line, file)) {
        line[strcspn (line, "\n")] = 0;
        char *fields[10];
        int count = 0;
        char *p = line;
        while (count < 10) {
            fields[count++] = p;
            p = strchr (p, '\t');
            if (!p)
                break;
            *p++ = 0;
        }
        if (count != 10 || !*fields[0]) {
            rc = -1;
            break;
        }
        s_row_t *row = s_row (self, fields[0]);
        row->facts = (unsigned) strtoul (fields[1], NULL, 10);
        s_set (&row->customer, fields[2]);
        s_set (&row->sku, fields[3]);
        row->quantity = (uint32_t) strtoul (fields[4], NULL, 10);
        row->total = strtoll (fields[5], NULL, 10);
        row->charged = strtoll (fields[6], NULL, 10);
        row->refunded = strtoll (fields[7], NULL, 10);
        s_set (&row->currency, fields[8]);
        s_set (&row->reason, fields[9]);
    }
    fclose (file);
    if (rc)
        fprintf (stderr, S_PROGRAM ": %s is damaged: run with --rebuild\n", self->path);
    return rc;
}

static int
s_tick (void *arg)
{
    s_view_t *self = (s_view_t *) arg;
    if (!self->dirty)
        return 0;
    if (zclock_mono () - self->saved_at < S_SAVE_MS)
        return 1; //  hold the acknowledgements until the next save
    if (s_save (self))
        return 1;
    self->dirty = false;
    self->saved_at = zclock_mono ();
    return 0;
}

static void
s_fill (Shop__V1__OrderView *view, const char *order_id, s_row_t *row)
{
    view->order_id = (char *) order_id;
    view->customer = row->customer;
    view->sku = row->sku;
    view->quantity = row->quantity;
    view->total_cents = row->total;
    view->status = (char *) s_status (row->facts);
    view->reason = row->reason;
    view->charged_cents = row->charged;
    view->refunded_cents = row->refunded;
    view->currency = row->currency;
}

static int
s_request (void *arg, const uint8_t *data, size_t size, uint8_t **reply_p, size_t *reply_size_p)
{
    s_view_t *self = (s_view_t *) arg;
    Shop__V1__ShopRequest *request = shop__v1__shop_request__unpack (NULL, size, data);
    Shop__V1__ShopReply reply = SHOP__V1__SHOP_REPLY__INIT;
    reply.request_id = request ? request->request_id : 0;
    if (!request || request->body_case != SHOP__V1__SHOP_REQUEST__BODY_QUERY) {
        reply.body_case = SHOP__V1__SHOP_REPLY__BODY_ERROR;
        reply.error = request ? "order-view answers OrderQuery only"
                              : "bad request: not a shop.v1.ShopRequest";
        *reply_p = service_pack (&reply.base, reply_size_p);
        if (request)
            shop__v1__shop_request__free_unpacked (request, NULL);
        return 0;
    }
    const char *wanted = request->query->order_id;
    size_t count = *wanted ? 1 : zhashx_size (self->rows);
    Shop__V1__OrderView *views =
        (Shop__V1__OrderView *) calloc (count ? count : 1, sizeof (Shop__V1__OrderView));
    Shop__V1__OrderView **pointers =
        (Shop__V1__OrderView **) calloc (count ? count : 1, sizeof (Shop__V1__OrderView *));
    size_t filled = 0;
    if (*wanted) {
        s_row_t *row = (s_row_t *) zhashx_lookup (self->rows, wanted);
        if (row) {
            shop__v1__order_view__init (&views[0]);
            s_fill (&views[0], wanted, row);
            pointers[filled++] = &views[0];
        }
    }
    else
        for (s_row_t *row = (s_row_t *) zhashx_first (self->rows); row && filled < count;
             row = (s_row_t *) zhashx_next (self->rows)) {
            shop__v1__order_view__init (&views[filled]);
            s_fill (&views[filled], (const char *) zhashx_cursor (self->rows), row);
            pointers[filled] = &views[filled];
            filled++;
        }
    Shop__V1__OrderList list = SHOP__V1__ORDER_LIST__INIT;
    list.orders = pointers;
    list.n_orders = filled;
    list.events_applied = self->applied;
    reply.body_case = SHOP__V1__SHOP_REPLY__BODY_ORDERS;
    reply.orders = &list;
    *reply_p = service_pack (&reply.base, reply_size_p);
    free (views);
    free (pointers);
    shop__v1__shop_request__free_unpacked (request, NULL);
    return 0;
}

//  --------------------------------------------------------------------------
//  order-view query: the command-line client

static int
s_compare_views (const void *a, const void *b)
{
    const Shop__V1__OrderView *x = *(Shop__V1__OrderView *const *) a;
    const Shop__V1__OrderView *y = *(Shop__V1__OrderView *const *) b;
    return strcmp (x->order_id, y->order_id);
}

static void
s_query_reply (void *arg, const uint8_t *data, size_t size)
{
    int *status = (int *) arg;
    Shop__V1__ShopReply *reply = shop__v1__shop_reply__unpack (NULL, size, data);
    if (!reply || reply->body_case != SHOP__V1__SHOP_REPLY__BODY_ORDERS) {
        fprintf (stderr, "order-view query: %s\n",
                 reply && reply->body_case == SHOP__V1__SHOP_REPLY__BODY_ERROR
                     ? reply->error
                     : "the reply is not an order list");
        *status = 1;
    }
    else {
        Shop__V1__OrderList *list = reply->orders;
        qsort (list->orders, list->n_orders, sizeof list->orders[0], s_compare_views);
        for (size_t i = 0; i < list->n_orders; i++) {
            Shop__V1__OrderView *view = list->orders[i];
            printf ("%s %s customer=%s sku=%s quantity=%u total=%lld charged=%lld "
                    "refunded=%lld currency=%s reason=\"%s\"\n",
                    view->order_id, view->status, view->customer, view->sku, view->quantity,
                    (long long) view->total_cents, (long long) view->charged_cents,
                    (long long) view->refunded_cents, view->currency, view->reason);
        }
        fprintf (stderr, "order-view: %zu orders, %llu events applied\n", list->n_orders,
                 (unsigned long long) list->events_applied);
    }
    if (reply)
        shop__v1__shop_reply__free_unpacked (reply, NULL);
}

static int
s_query_main (int argc, char **argv)
{
    const char *endpoint = NULL, *data_dir = NULL, *order_id = "";
    int positional = 0;
    for (int i = 2; i < argc; i++) {
        if (streq (argv[i], "--connect") && i + 1 < argc)
            endpoint = argv[++i];
        else if (streq (argv[i], "--data") && i + 1 < argc)
            data_dir = argv[++i];
        else if (argv[i][0] != '-' && positional++ == 0)
            order_id = argv[i];
        else {
            fprintf (stderr, "usage: order-view query (--connect ENDPOINT | --data DIR) [ORDER]\n");
            return 2;
        }
    }
    char *target = service_client_endpoint (endpoint, data_dir);
    if (!target)
        return 1;
    Shop__V1__OrderQuery query = SHOP__V1__ORDER_QUERY__INIT;
    query.order_id = (char *) order_id;
    Shop__V1__ShopRequest request = SHOP__V1__SHOP_REQUEST__INIT;
    request.request_id = 1;
    request.body_case = SHOP__V1__SHOP_REQUEST__BODY_QUERY;
    request.query = &query;
    size_t size = 0;
    uint8_t *data = service_pack (&request.base, &size);
    int status = 0;
    if (service_client_requests (target, &data, &size, 1, 1, 0, 5000, s_query_reply, &status))
        status = 1;
    free (data);
    free (target);
    return status;
}

static int
s_option (void *arg, int argc, char **argv, int index)
{
    (void) argc;
    if (!streq (argv[index], "--rebuild"))
        return 0;
    *(bool *) arg = true;
    return 1;
}

int
main (int argc, char **argv)
{
    if (argc > 1 && streq (argv[1], "query"))
        return s_query_main (argc, argv);
    service_config_t config = {
        .program = S_PROGRAM,
        .usage = "       [--rebuild]\n"
                 "       order-view query (--connect ENDPOINT | --data DIR) [ORDER]"};
    config.listen = "tcp://127.0.0.1:*";
    bool rebuild = false;
    service_parse (&config, argc, argv, s_option, &rebuild);

    s_view_t self = {0};
    self.rows = zhashx_new ();
    zhashx_set_destructor (self.rows, s_row_free);
    zsys_dir_create ("%s", config.data_dir);
    snprintf (self.path, sizeof self.path, "%s/view.dat", config.data_dir);
    if (rebuild)
        unlink (self.path);
    else if (s_load (&self)) {
        zhashx_destroy (&self.rows);
        return 1;
    }
    //  Said before the start line, so that whoever waits for that line has it.
    fprintf (stderr, S_PROGRAM ": %s with %zu orders\n", rebuild ? "rebuilding" : "started",
             zhashx_size (self.rows));
    self.service = service_new (&config);
    if (!self.service) {
        zhashx_destroy (&self.rows);
        return 1;
    }
    shoal_node_t *node = service_node (self.service);
    const char *streams[] = {"orders", "payments", "inventory"};
    for (int i = 0; i < 3; i++) {
        char consumer[64];
        snprintf (consumer, sizeof consumer, "order-view.%s", streams[i]);
        if (rebuild)
            shoal_node_consumer_delete (node, consumer);
        shoal_node_subscribe_durable (node, consumer, streams[i], NULL);
    }
    int rc = service_run (self.service, s_handle, s_request, s_tick, &self);
    if (self.dirty && s_save (&self) == 0)
        service_commit (self.service);
    service_destroy (&self.service);
    zhashx_destroy (&self.rows);
    return rc ? 1 : 0;
}
