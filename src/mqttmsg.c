/* mqttmsg.c: telemetry in, triggers and rollout states out, as JSON */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqttmsg.h"
#include "semver.h"
#include "sign.h"
#include "telemetry.h"

int
mqttmsg_topic_level(const char *filter, const char *topic, char *out,
    size_t len)
{
	const char *f = filter, *t = topic;

	if (strchr(filter, '+') == NULL)
		return 1;
	/* walk level by level until the '+' */
	for (;;) {
		size_t fl = strcspn(f, "/"), tl = strcspn(t, "/");

		if (fl == 1 && f[0] == '+') {
			if (tl == 0 || tl >= len)
				return -1;
			memcpy(out, t, tl);
			out[tl] = '\0';
			return 0;
		}
		if ((fl == 1 && f[0] == '#') || fl != tl ||
		    memcmp(f, t, fl) != 0 || f[fl] == '\0' || t[tl] == '\0')
			return -1;
		f += fl + 1;
		t += tl + 1;
	}
}

int
mqttmsg_telemetry(const void *payload, size_t len, const char *topic_device,
    struct telemetry_msg *out, char *msg, size_t msglen)
{
	const char *id = topic_device, *s;
	json_error_t jerr;
	json_t *o, *v;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (topic_device != NULL && otad_valid_id(topic_device))
		snprintf(out->device, sizeof(out->device), "%s", topic_device);
	if (len > MQTTMSG_TELEMETRY_MAX) {
		snprintf(msg, msglen, "payload of %zu bytes is over the %d "
		    "allowed", len, MQTTMSG_TELEMETRY_MAX);
		return -1;
	}
	if ((o = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &jerr)) ==
	    NULL) {
		snprintf(msg, msglen, "not JSON: %s", jerr.text);
		return -1;
	}
	if (!json_is_object(o)) {
		snprintf(msg, msglen, "not a JSON object");
		goto done;
	}
	if ((v = json_object_get(o, "device_id")) != NULL) {
		if ((s = json_string_value(v)) == NULL || !otad_valid_id(s)) {
			snprintf(msg, msglen, "'device_id' must be 1 to 64 of "
			    "A-Z a-z 0-9 . _ : -");
			goto done;
		}
		if (topic_device != NULL && strcmp(s, topic_device) != 0) {
			snprintf(msg, msglen, "'device_id' %s differs from "
			    "the topic's %s", s, topic_device);
			goto done;
		}
		id = s;
	}
	if (id == NULL || !otad_valid_id(id)) {
		snprintf(msg, msglen, "no device id: 'device_id' missing");
		goto done;
	}
	snprintf(out->device, sizeof(out->device), "%s", id);
	if ((v = json_object_get(o, "firmware")) == NULL)
		v = json_object_get(o, "version");
	if (v != NULL && !json_is_null(v)) {
		if ((s = json_string_value(v)) == NULL || !semver_valid(s)) {
			snprintf(msg, msglen, "'firmware' must be a version: "
			    "1 to 64 printable characters, no spaces");
			goto done;
		}
		snprintf(out->version, sizeof(out->version), "%s", s);
	}
	if (telemetry_from_json(o, &out->tel, out->metrics, msg, msglen) < 0)
		goto done;
	rc = 0;
done:
	json_decref(o);
	return rc;
}

static char *
dump(json_t *j)
{
	char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	return s;
}

char *
mqttmsg_trigger(const struct offer *o, const char *base_url,
    const char *reason, int64_t nudge_id)
{
	char url[512], id[80], *sig;
	json_t *j;

	if (nudge_id > 0)
		snprintf(id, sizeof(id), "nudge-%lld", (long long)nudge_id);
	else if (o != NULL)
		snprintf(id, sizeof(id), "%lld-%lld-%d",
		    (long long)o->rollout_id, (long long)o->release_id,
		    o->stage);
	else
		id[0] = '\0';
	if (o == NULL) {
		j = json_pack("{s:b,s:s}", "update", 0, "reason", reason);
		if (j != NULL && id[0] != '\0')
			json_object_set_new(j, "id", json_string(id));
		return dump(j);
	}
	snprintf(url, sizeof(url), "%s/firmware/artifacts/%s", base_url,
	    o->sha256);
	j = json_pack("{s:b,s:s,s:s,s:s,s:I,s:s,s:b,s:s,s:I}", "update", 1,
	    "version", o->version, "url", url, "sha256", o->sha256, "size",
	    (json_int_t)o->size, "md5", o->md5, "forced", o->forced, "reason",
	    reason, "rollout", (json_int_t)o->rollout_id);
	if (j != NULL)
		json_object_set_new(j, "id", json_string(id));
	if (j != NULL && o->key_id[0] != '\0' &&
	    (sig = sign_base64(o->sig, o->siglen)) != NULL) {
		json_object_set_new(j, "signature", json_string(sig));
		json_object_set_new(j, "key_id", json_string(o->key_id));
		free(sig);
	}
	return dump(j);
}

char *
mqttmsg_rollout_state(const json_t *row, int64_t now)
{
	const char *reason = json_string_value(json_object_get(row, "reason"));
	const char *product = json_string_value(json_object_get(row,
	    "product"));
	json_t *j;

	j = json_pack("{s:O,s:O,s:O,s:O,s:O,s:I}", "rollout",
	    json_object_get(row, "id"), "version", json_object_get(row,
	    "version"), "state", json_object_get(row, "state"), "stage",
	    json_object_get(row, "stage"), "stages", json_object_get(row,
	    "stages"), "at", (json_int_t)now);
	if (j == NULL)
		return NULL;
	json_object_set_new(j, "staged", json_boolean(json_integer_value(
	    json_object_get(row, "staged"))));
	if (product != NULL && product[0] != '\0')
		json_object_set_new(j, "product", json_string(product));
	if (reason != NULL && reason[0] != '\0')
		json_object_set_new(j, "reason", json_string(reason));
	return dump(j);
}
