/*  =========================================================================
    inventory - the stock service of the shop saga

    A durable consumer of PaymentCompleted (stream "payments"): it reserves
    the order's quantity of its sku and records StockReserved, or
    StockFailed when the stock left is too small; StockFailed makes the
    saga compensate (payments refunds, orders cancels).

    The stock of a sku is its initial level (--stock SKU=N, else
    --default-stock, 1000000 by default) minus what its StockReserved
    events took. At start it folds its own "inventory" log into the stock
    levels and the set of orders already decided, so a redelivered
    PaymentCompleted reserves nothing twice.

        inventory --data DIR [--stock SKU=N]... [--default-stock N] [common options]
    ========================================================================= */

#include "service.h"
#include "shop.pb-c.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PROGRAM "inventory"

typedef struct {
    service_t *service;     //  node and loop
    zhashx_t *stock;        //  sku -> uint64_t units left (malloc'd)
    zhashx_t *decided;      //  order id -> "reserved" or "failed" (static strings)
    uint64_t default_stock; //  initial level of a sku without --stock
    uint64_t redelivered;   //  inputs that found their order already decided
} s_inventory_t;

static uint64_t *
s_level (s_inventory_t *self, const char *sku)
{
    uint64_t *level = (uint64_t *) zhashx_lookup (self->stock, sku);
    if (!level) {
        level = (uint64_t *) malloc (sizeof (uint64_t));
        *level = self->default_stock;
        zhashx_insert (self->stock, sku, level);
    }
    return level;
}

static void
s_fold (void *arg, const shoal_event_t *event)
{
    s_inventory_t *self = (s_inventory_t *) arg;
    const char *type = shoal_event_type (event);
    if (streq (type, "StockReserved")) {
        Shop__V1__StockReserved *reserved = (Shop__V1__StockReserved *) service_unpack (
            S_PROGRAM, &shop__v1__stock_reserved__descriptor, event);
        if (reserved) {
            uint64_t *level = s_level (self, reserved->sku);
            *level = *level >= reserved->quantity ? *level - reserved->quantity : 0;
            zhashx_update (self->decided, reserved->order_id, "reserved");
            protobuf_c_message_free_unpacked (&reserved->base, NULL);
        }
    }
    else if (streq (type, "StockFailed"))
        zhashx_update (self->decided, shoal_event_key (event), "failed");
}

static void
s_handle (void *arg, int subscription, const shoal_event_t *event)
{
    (void) subscription;
    s_inventory_t *self = (s_inventory_t *) arg;
    if (!streq (shoal_event_type (event), "PaymentCompleted"))
        return;
    Shop__V1__PaymentCompleted *paid = (Shop__V1__PaymentCompleted *) service_unpack (
        S_PROGRAM, &shop__v1__payment_completed__descriptor, event);
    if (!paid)
        return;
    if (zhashx_lookup (self->decided, paid->order_id)) {
        self->redelivered++;
        protobuf_c_message_free_unpacked (&paid->base, NULL);
        return;
    }
    char cause[33];
    service_event_id (event, cause);
    const char *correlation = shoal_event_correlation_id (event);
    uint64_t *level = s_level (self, paid->sku);
    int rc;
    if (paid->quantity > 0 && *level >= paid->quantity) {
        Shop__V1__StockReserved reserved = SHOP__V1__STOCK_RESERVED__INIT;
        reserved.order_id = paid->order_id;
        reserved.sku = paid->sku;
        reserved.quantity = paid->quantity;
        reserved.remaining = *level - paid->quantity;
        rc = service_emit (self->service, "inventory", "StockReserved", paid->order_id, correlation,
                           cause, 1, &reserved.base, NULL, NULL);
        if (rc == 0) {
            *level -= paid->quantity;
            zhashx_update (self->decided, paid->order_id, "reserved");
        }
    }
    else {
        Shop__V1__StockFailed failed = SHOP__V1__STOCK_FAILED__INIT;
        failed.order_id = paid->order_id;
        failed.sku = paid->sku;
        failed.quantity = paid->quantity;
        failed.available = *level;
        rc = service_emit (self->service, "inventory", "StockFailed", paid->order_id, correlation,
                           cause, 1, &failed.base, NULL, NULL);
        if (rc == 0)
            zhashx_update (self->decided, paid->order_id, "failed");
    }
    protobuf_c_message_free_unpacked (&paid->base, NULL);
}

static int
s_parse_level (const char *text, uint64_t *level)
{
    char *end;
    unsigned long long value = strtoull (text, &end, 10);
    if (end == text || *end || *text == '-')
        return -1;
    *level = value;
    return 0;
}

typedef struct {
    const char *skus[64];   //  --stock SKU
    uint64_t levels[64];    //  its level
    size_t count;           //  entries
    uint64_t default_stock; //  --default-stock
} s_options_t;

static int
s_option (void *arg, int argc, char **argv, int index)
{
    s_options_t *options = (s_options_t *) arg;
    const char *option = argv[index];
    if (!streq (option, "--stock") && !streq (option, "--default-stock"))
        return 0;
    if (index + 1 >= argc) {
        fprintf (stderr, S_PROGRAM ": %s needs a value\n", option);
        return -1;
    }
    const char *value = argv[index + 1];
    if (streq (option, "--default-stock")) {
        if (s_parse_level (value, &options->default_stock)) {
            fprintf (stderr, S_PROGRAM ": bad --default-stock '%s'\n", value);
            return -1;
        }
        return 2;
    }
    const char *equals = strchr (value, '=');
    if (!equals || equals == value || options->count == 64
        || s_parse_level (equals + 1, &options->levels[options->count])) {
        fprintf (stderr, S_PROGRAM ": --stock wants SKU=UNITS, not '%s'\n", value);
        return -1;
    }
    options->skus[options->count++] = value;
    return 2;
}

int
main (int argc, char **argv)
{
    service_config_t config = {.program = S_PROGRAM,
                               .usage = "       [--stock SKU=UNITS]... [--default-stock UNITS]"};
    s_options_t options = {.default_stock = 1000000};
    service_parse (&config, argc, argv, s_option, &options);

    s_inventory_t self = {0};
    self.default_stock = options.default_stock;
    self.stock = zhashx_new ();
    zhashx_set_destructor (self.stock, (zhashx_destructor_fn *) zstr_free);
    self.decided = zhashx_new ();
    for (size_t i = 0; i < options.count; i++) {
        char sku[256];
        snprintf (sku, sizeof sku, "%.*s", (int) (strchr (options.skus[i], '=') - options.skus[i]),
                  options.skus[i]);
        *s_level (&self, sku) = options.levels[i];
    }
    int rc = service_read_own_log (config.data_dir, "inventory", s_fold, &self);
    if (rc == 0)
        self.service = service_new (&config);
    if (self.service) {
        fprintf (stderr, S_PROGRAM ": %zu orders decided before, rebuilt from the log\n",
                 zhashx_size (self.decided));
        shoal_node_subscribe_durable (service_node (self.service), "inventory.payments", "payments",
                                      "PaymentCompleted");
        rc = service_run (self.service, s_handle, NULL, NULL, &self);
        service_destroy (&self.service);
    }
    else
        rc = -1;
    zhashx_destroy (&self.stock);
    zhashx_destroy (&self.decided);
    return rc ? 1 : 0;
}
