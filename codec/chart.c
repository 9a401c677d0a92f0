/* chart.c — a check report drawn as a self-contained SVG (codec.h
 * "reports"): bits per weight against KL divergence to f32 (log scale),
 * and top-1 agreement below it on the same x axis, the way llama.cpp's
 * quantization scoreboards compare quants. Plain SVG 1.1: no script, no
 * external font or style, so any browser (and rsvg, Inkscape) draws it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define W 780
#define PX0 86.0  /* plot area, x */
#define PX1 740.0
#define KY0 58.0  /* KL panel, y (top, bottom) */
#define KY1 338.0
#define TY0 392.0 /* top-1 panel */
#define TY1 532.0

static void esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t')
                fputc(*s, f);
        }
    }
}

struct box {
    double x0, y0, x1, y1;
};


static double overlap(const struct box *a, const struct box *b)
{
    double w = fmin(a->x1, b->x1) - fmax(a->x0, b->x0), h = fmin(a->y1, b->y1) - fmax(a->y0, b->y0);
    return w > 0 && h > 0 ? w * h : 0;
}

/* A view's label beside its marker: of a few places around it, the first
 * that hits no label placed before it, else the one that hides least
 * (names are short; a crowded chart still reads). */
static void label(FILE *f, struct box *placed, size_t *np, double x, double y, const char *text, double ymin,
                  double ymax)
{
    double w = 6.6 * (double)strlen(text), h = 12;
    static const double dy[] = {-5, 13, -17, 25, -29, 37, -41, 49, 61, -53, 73};
    struct box best = {0};
    double best_cost = INFINITY;
    for (size_t k = 0; k < 2 * sizeof dy / sizeof *dy && best_cost > 0; k++) {
        double lx = k % 2 ? x - 7 - w : x + 7, ly = y + dy[k / 2];
        struct box b = {lx, ly - h + 2, lx + w, ly + 2};
        if (b.x1 > PX1 + 36 || b.x0 < PX0 - 4 || b.y0 < ymin || b.y1 > ymax)
            continue;
        double cost = 0;
        for (size_t i = 0; i < *np; i++)
            cost += overlap(&b, &placed[i]);
        if (cost < best_cost)
            best_cost = cost, best = b;
    }
    if (!isfinite(best_cost)) /* nowhere inside: to the right, above */
        best = (struct box){x + 7, y - 5 - h + 2, x + 7 + w, y - 3};
    placed[(*np)++] = best;
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"lab\">", best.x0, best.y1 - 2);
    esc(f, text);
    fputs("</text>\n", f);
}

static bool drawn(const struct qf_chart_point *p)
{
    return p->has_kl && isfinite(p->kl) && p->kl > 0 && isfinite(p->bpw);
}

/* Views at one spot (same bits per weight and value: the mixes of a tiny
 * model often coincide) share a marker and one label, "q2_k, q4_0". */
struct spot {
    double x, y;
    bool pass;
    char text[160];
};

static size_t add_spot(struct spot *sp, size_t n, double x, double y, bool pass, const char *view)
{
    for (size_t i = 0; i < n; i++) {
        if (fabs(sp[i].x - x) < 1.5 && fabs(sp[i].y - y) < 1.5 && sp[i].pass == pass) {
            size_t l = strlen(sp[i].text);
            if (l + strlen(view) + 3 < sizeof sp[i].text)
                snprintf(sp[i].text + l, sizeof sp[i].text - l, ", %s", view);
            else if (l + 5 < sizeof sp[i].text && strcmp(sp[i].text + l - 3, "..."))
                snprintf(sp[i].text + l, sizeof sp[i].text - l, ", ...");
            return n;
        }
    }
    sp[n] = (struct spot){x, y, pass, ""};
    snprintf(sp[n].text, sizeof sp[n].text, "%s", view);
    return n + 1;
}

static void draw_spots(FILE *f, const struct spot *sp, size_t n, struct box *placed, size_t *np, double ymin,
                       double ymax)
{
    for (size_t i = 0; i < n; i++)
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4.5\" class=\"%s\"/>\n", sp[i].x, sp[i].y,
                sp[i].pass ? "pass" : "fail");
    for (size_t i = 0; i < n; i++)
        label(f, placed, np, sp[i].x, sp[i].y, sp[i].text, ymin, ymax);
}

char *qf_check_chart_svg(const char *model, const struct qf_chart_point *pts, size_t n)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    /* axes: x from the views' bits per weight, y decades around their KL */
    double xlo = INFINITY, xhi = -INFINITY, klo = INFINITY, khi = -INFINITY, tlo = 1;
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        if (!drawn(&pts[i]))
            continue;
        nd++;
        xlo = fmin(xlo, pts[i].bpw);
        xhi = fmax(xhi, pts[i].bpw);
        klo = fmin(klo, pts[i].kl);
        khi = fmax(khi, pts[i].kl);
        if (isfinite(pts[i].top1))
            tlo = fmin(tlo, fmax(pts[i].top1, 0));
    }
    /* top-1 from a round step under the lowest view's to 1, 4-10 ticks */
    double r = 1 - tlo, tstep = r < 0.03 ? 0.005 : r < 0.08 ? 0.01 : r < 0.18 ? 0.02 : r < 0.45 ? 0.05 : 0.1;
    tlo = fmax(0, floor((tlo - tstep / 2) / tstep) * tstep);
    if (!nd)
        xlo = 0, xhi = 16;
    xlo = floor(xlo) - 1 < 0 ? 0 : floor(xlo) - 1;
    xhi = ceil(xhi) + 1;
    int dlo = isfinite(klo) ? (int)floor(log10(klo)) : -6, dhi = isfinite(khi) ? (int)ceil(log10(khi)) : -5;
    if (dhi <= dlo)
        dhi = dlo + 1;
    int H = 592 + 14 * (int)(n - nd); /* room for the views not drawn */
    double xstep = xhi - xlo > 16 ? 4 : xhi - xlo > 8 ? 2 : 1;
#define XP(v) (PX0 + ((v) - xlo) / (xhi - xlo) * (PX1 - PX0))
#define KP(v) (KY1 - (log10(fmax((v), pow(10, dlo))) - dlo) / (double)(dhi - dlo) * (KY1 - KY0))
#define TP(v) (TY1 - ((v) - tlo) / (1 - tlo) * (TY1 - TY0))
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n"
            "<style>text{font-family:'DejaVu Sans',Arial,Helvetica,sans-serif;fill:#222}"
            ".lab{font-size:11px}.ax{font-size:11px;fill:#555}.ttl{font-size:15px;font-weight:bold}"
            ".grid{stroke:#e4e4e4;stroke-width:1}.frame{fill:none;stroke:#888;stroke-width:1}"
            ".pass{fill:#1f6fb4}.fail{fill:#d62728}</style>\n"
            "<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n",
            W, H, W, H, W, H);
    fputs("<text x=\"86\" y=\"30\" class=\"ttl\">", f);
    esc(f, model);
    fputs(": KL divergence to f32 and top-1 agreement, by bits per weight</text>\n", f);
    /* grid, ticks, frames */
    for (int d = dlo; d <= dhi; d++) {
        double y = KY1 - (double)(d - dlo) / (double)(dhi - dlo) * (KY1 - KY0);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>\n", PX0, y, PX1, y);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"ax\" text-anchor=\"end\">1e%d</text>\n", PX0 - 6, y + 4, d);
    }
    for (int k = 0; tlo + k * tstep <= 1 + 1e-9; k++) {
        double v = tlo + k * tstep, y = TP(v);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>\n", PX0, y, PX1, y);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"ax\" text-anchor=\"end\">%.3g</text>\n", PX0 - 6, y + 4, v);
    }
    for (double v = ceil(xlo / xstep) * xstep; v <= xhi + 1e-9; v += xstep) {
        double x = XP(v);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>\n", x, KY0, x, KY1);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>\n", x, TY0, x, TY1);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"ax\" text-anchor=\"middle\">%g</text>\n", x, TY1 + 16, v);
    }
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" class=\"frame\"/>\n", PX0, KY0, PX1 - PX0,
            KY1 - KY0);
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" class=\"frame\"/>\n", PX0, TY0, PX1 - PX0,
            TY1 - TY0);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"ax\" text-anchor=\"middle\">bits per weight</text>\n",
            (PX0 + PX1) / 2, TY1 + 34);
    fprintf(f, "<text x=\"20\" y=\"%.1f\" class=\"ax\" text-anchor=\"middle\" transform=\"rotate(-90 20 %.1f)\">"
               "mean KL divergence to f32 (log)</text>\n",
            (KY0 + KY1) / 2, (KY0 + KY1) / 2);
    fprintf(f, "<text x=\"20\" y=\"%.1f\" class=\"ax\" text-anchor=\"middle\" transform=\"rotate(-90 20 %.1f)\">"
               "top-1 agreement</text>\n",
            (TY0 + TY1) / 2, (TY0 + TY1) / 2);
    /* legend */
    fprintf(f, "<circle cx=\"%.1f\" cy=\"44\" r=\"4.5\" class=\"pass\"/><text x=\"%.1f\" y=\"48\" class=\"ax\">pass"
               "</text><circle cx=\"%.1f\" cy=\"44\" r=\"4.5\" class=\"fail\"/><text x=\"%.1f\" y=\"48\" "
               "class=\"ax\">fail</text>\n",
            PX1 - 92, PX1 - 84, PX1 - 44, PX1 - 36);
    /* points (with their numbers on hover) and labels */
    struct box *placed = calloc(2 * n + 1, sizeof *placed);
    struct spot *sk = calloc(n + 1, sizeof *sk), *st = calloc(n + 1, sizeof *st);
    size_t np = 0, nk = 0, nt = 0;
    for (size_t i = 0; i < n && placed && sk && st; i++) {
        const struct qf_chart_point *p = &pts[i];
        if (!drawn(p))
            continue;
        double x = XP(p->bpw);
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"7\" fill-opacity=\"0\"><title>", x, KP(p->kl));
        esc(f, p->view);
        fprintf(f, ": %.3f bits/weight, KL %.3g, top-1 %.3f</title></circle>\n", p->bpw, p->kl, p->top1);
        nk = add_spot(sk, nk, x, KP(p->kl), p->pass, p->view);
        if (isfinite(p->top1))
            nt = add_spot(st, nt, x, TP(fmin(fmax(p->top1, 0), 1)), p->pass, p->view);
    }
    if (placed && sk && st) {
        draw_spots(f, sk, nk, placed, &np, KY0 - 12, KY1);
        draw_spots(f, st, nt, placed, &np, TY0 - 14, TY1);
    }
    free(placed);
    free(sk);
    free(st);
    /* what is not drawn, and why: nothing silently left out */
    double y = TY1 + 56;
    for (size_t i = 0; i < n; i++) {
        if (drawn(&pts[i]))
            continue;
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"ax\">not drawn: ", PX0, y);
        esc(f, pts[i].view);
        fputs(" (", f);
        esc(f, pts[i].has_kl && pts[i].kl <= 0 ? "identical to f32: KL 0"
               : pts[i].why && pts[i].why[0]    ? pts[i].why
                                                : "no KL divergence: not a llama-architecture model");
        fputs(")</text>\n", f);
        y += 14;
    }
    if (!nd && !n)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"ax\">no view checked (yet)</text>\n", PX0, (KY0 + KY1) / 2);
    fputs("</svg>\n", f);
    if (fclose(f)) {
        free(buf);
        return NULL;
    }
#undef XP
#undef KP
#undef TP
    return buf;
}
