/* policy.c: which release, if any, a device should be offered */
#include <stddef.h>
#include <string.h>

#include "policy.h"
#include "semver.h"

/* Newest offer limited to product (or, with product NULL, unrestricted). */
static const struct offer *
newest_for(const char *product, const struct offer *offers, size_t n)
{
	size_t i;

	/* offers are sorted newest first, so the first match is the one */
	for (i = 0; i < n; i++) {
		if (product == NULL && offers[i].product[0] == '\0')
			return &offers[i];
		if (product != NULL && strcmp(offers[i].product, product) == 0)
			return &offers[i];
	}
	return NULL;
}

void
policy_decide(const struct device_facts *dev, const struct offer *offers,
    size_t n, int64_t now, struct decision *out)
{
	const struct offer *o = NULL;

	(void)now; /* windows and soak times will read it */
	out->kind = DECISION_NONE;
	out->offer = NULL;
	if (dev->product != NULL && dev->product[0] != '\0')
		o = newest_for(dev->product, offers, n);
	if (o == NULL)
		o = newest_for(NULL, offers, n);
	if (o == NULL)
		return;
	if (semver_compare(dev->version, o->version) >= 0)
		return;
	out->kind = DECISION_OFFER;
	out->offer = o;
}
