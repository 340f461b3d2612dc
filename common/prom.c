/* The metrics answer read and rendered as Prometheus text (common/prom.h). */
#include "common/prom.h"

#include <errno.h>
#include <string.h>

#define MAX_FAMILIES 128

/* Cuts the field at *p (ending at a tab or the line's end) and returns
 * it; *p moves past the tab, or to NULL at the last field. */
static char *field(char **p)
{
	char *f = *p, *tab;

	if (!f)
		return NULL;
	tab = strchr(f, '\t');
	if (tab) {
		*tab = '\0';
		*p = tab + 1;
	} else {
		*p = NULL;
	}
	return f;
}

/* A metric or label name per the text format: [a-zA-Z_:][a-zA-Z0-9_:]*. */
static bool name_ok(const char *s, bool colon)
{
	if (!s || !*s || (*s >= '0' && *s <= '9'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' ||
		      (colon && *s == ':')))
			return false;
	return true;
}

/* A sample value as the format takes it: a float or +Inf/-Inf/NaN. */
static bool value_ok(const char *s)
{
	if (!s || !*s)
		return false;
	if (!strcmp(s, "+Inf") || !strcmp(s, "-Inf") || !strcmp(s, "NaN"))
		return true;
	return strspn(s, "0123456789.eE+-") == strlen(s);
}

static bool parse(char *line, struct dms_prom_line *l)
{
	char *p = line, *kind = field(&p);

	memset(l, 0, sizeof(*l));
	if (!kind)
		return false;
	if (!strcmp(kind, "family")) {
		l->kind = DMS_PROM_FAMILY;
		l->name = field(&p);
		l->type = field(&p);
		l->help = field(&p);
		return name_ok(l->name, true) && l->type && l->help &&
		       (!strcmp(l->type, "counter") ||
		        !strcmp(l->type, "gauge") ||
		        !strcmp(l->type, "histogram"));
	}
	if (strcmp(kind, "sample"))
		return false;
	l->kind = DMS_PROM_SAMPLE;
	l->name = field(&p);
	l->value = field(&p);
	if (!name_ok(l->name, true) || !value_ok(l->value))
		return false;
	while (p && l->nlabels < DMS_PROM_LABELS) {
		char *kv = field(&p), *eq = strchr(kv, '=');

		if (!eq)
			continue;
		*eq = '\0';
		/* "mount" is the renderer's: a sample never brings its own. */
		if (!name_ok(kv, false) || !strcmp(kv, "mount"))
			continue;
		l->key[l->nlabels] = kv;
		l->val[l->nlabels++] = eq + 1;
	}
	return true;
}

bool dms_prom_next(const char **pos, struct dms_prom_line *l, char *buf,
                   size_t cap)
{
	while (**pos) {
		const char *s = *pos, *nl = strchr(s, '\n');
		size_t len = nl ? (size_t)(nl - s) : strlen(s);

		*pos = s + len + (nl ? 1 : 0);
		if (len >= cap)
			continue;   /* longer than any line we write */
		memcpy(buf, s, len);
		buf[len] = '\0';
		if (parse(buf, l))
			return true;
	}
	return false;
}

void dms_prom_escape(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", out);
		else if (*s == '"')
			fputs("\\\"", out);
		else if (*s == '\n')
			fputs("\\n", out);
		else
			fputc(*s, out);
	}
}

/* HELP text escapes backslash and newline only. */
static void escape_help(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", out);
		else if (*s == '\n')
			fputs("\\n", out);
		else
			fputc(*s, out);
	}
}

/* Writes the samples of family fam in answer, labelled with mount. */
static void render_family(FILE *out, const char *fam, const char *mount,
                          const char *answer)
{
	char buf[DMS_PROM_LINE_MAX];
	struct dms_prom_line l;
	const char *pos = answer;
	bool in = false;

	while (dms_prom_next(&pos, &l, buf, sizeof(buf))) {
		if (l.kind == DMS_PROM_FAMILY) {
			in = !strcmp(l.name, fam);
			continue;
		}
		if (!in)
			continue;
		fprintf(out, "%s{mount=\"", l.name);
		dms_prom_escape(out, mount);
		fputc('"', out);
		for (size_t i = 0; i < l.nlabels; i++) {
			fprintf(out, ",%s=\"", l.key[i]);
			dms_prom_escape(out, l.val[i]);
			fputc('"', out);
		}
		fprintf(out, "} %s\n", l.value);
	}
}

int dms_prom_render(FILE *out, const struct dms_prom_src *v, size_t n)
{
	/* Family names, types and help texts, copied: the line buffer is
	 * reused for every line. */
	struct fam {
		char name[128], type[16], help[256];
	} fams[MAX_FAMILIES];
	char buf[DMS_PROM_LINE_MAX];
	struct dms_prom_line l;
	size_t nf = 0, i, k;

	for (i = 0; i < n; i++) {
		const char *pos = v[i].answer;

		while (dms_prom_next(&pos, &l, buf, sizeof(buf))) {
			if (l.kind != DMS_PROM_FAMILY)
				continue;
			for (k = 0; k < nf && strcmp(fams[k].name, l.name); k++)
				;
			if (k < nf || nf == MAX_FAMILIES ||
			    strlen(l.name) >= sizeof(fams[0].name))
				continue;
			snprintf(fams[nf].name, sizeof(fams[0].name), "%s",
			         l.name);
			snprintf(fams[nf].type, sizeof(fams[0].type), "%s",
			         l.type);
			snprintf(fams[nf].help, sizeof(fams[0].help), "%s",
			         l.help);
			nf++;
		}
	}
	for (k = 0; k < nf; k++) {
		fprintf(out, "# HELP %s ", fams[k].name);
		escape_help(out, fams[k].help);
		fprintf(out, "\n# TYPE %s %s\n", fams[k].name, fams[k].type);
		for (i = 0; i < n; i++)
			render_family(out, fams[k].name, v[i].mount,
			              v[i].answer);
	}
	return ferror(out) ? -EIO : 0;
}
