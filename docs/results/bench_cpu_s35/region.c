#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { float x0, y0, x1, y1, score; long label; } det_t;

static int cmp_score(const void *a, const void *b) {
    const det_t *p = a, *q = b;
    if (p->score > q->score) return -1;
    if (p->score < q->score) return 1;
    return (p < q) ? -1 : (p > q);
}

static float sigm(float v) { return 1.f / (1.f + expf(-v)); }

/* raw: head output (1, A*(5+C), h, w) with strides s_ch (channel) and s_cell (row-major cell) in floats.
   Writes up to max_out detections (score-descending), returns their count. */
int region_decode_nms(const float *raw, long s_ch, long s_cell, int A, int C, int h, int w,
                      const float *anchors, float conf, float iou, float W, float H, int max_out,
                      float *out_boxes, float *out_scores, long *out_labels, det_t *work, int work_cap) {
    int n = 0, K = 5 + C;
    float sx = W / w, sy = H / h;
    for (int cell = 0; cell < h * w; ++cell) {
        const float *p = raw + cell * s_cell;
        int col = cell % w, row = cell / w;
        for (int a = 0; a < A; ++a) {
            const float *q = p + (long)a * K * s_ch;
            float obj = sigm(q[4 * s_ch]);
            float mx = q[5 * s_ch];
            for (int c = 1; c < C; ++c) { float v = q[(5 + c) * s_ch]; if (v > mx) mx = v; }
            float sum = 0.f;
            for (int c = 0; c < C; ++c) sum += expf(q[(5 + c) * s_ch] - mx);
            if (obj / sum <= conf) continue;  /* the best class's probability */
            float cx = (sigm(q[0]) + col) * sx, cy = (sigm(q[s_ch]) + row) * sy;
            float bw = expf(q[2 * s_ch]) * anchors[2 * a] * sx, bh = expf(q[3 * s_ch]) * anchors[2 * a + 1] * sy;
            for (int c = 0; c < C; ++c) {
                float pr = obj * (expf(q[(5 + c) * s_ch] - mx) / sum);
                if (pr > conf && n < work_cap) {
                    det_t *d = work + n++;
                    d->x0 = cx - bw / 2; d->y0 = cy - bh / 2; d->x1 = cx + bw / 2; d->y1 = cy + bh / 2;
                    d->score = pr; d->label = c;
                }
            }
        }
    }
    qsort(work, n, sizeof(det_t), cmp_score);
    int m = 0;
    for (int i = 0; i < n && m < max_out; ++i) {
        det_t *d = work + i;
        if (d->score < 0) continue;
        if (iou < 0) goto out;
        float ai = (d->x1 - d->x0) * (d->y1 - d->y0);
        for (int j = i + 1; j < n; ++j) {
            det_t *e = work + j;
            if (e->label != d->label || e->score < 0) continue;
            float iw = fminf(d->x1, e->x1) - fmaxf(d->x0, e->x0), ih = fminf(d->y1, e->y1) - fmaxf(d->y0, e->y0);
            if (iw <= 0 || ih <= 0) continue;
            float inter = iw * ih, aj = (e->x1 - e->x0) * (e->y1 - e->y0);
            if (inter / (ai + aj - inter) > iou) e->score = -1;
        }
    out:
        out_boxes[4 * m] = fminf(fmaxf(d->x0, 0), W); out_boxes[4 * m + 1] = fminf(fmaxf(d->y0, 0), H);
        out_boxes[4 * m + 2] = fminf(fmaxf(d->x1, 0), W); out_boxes[4 * m + 3] = fminf(fmaxf(d->y1, 0), H);
        out_scores[m] = d->score; out_labels[m] = d->label; ++m;
    }
    return m;
}

void to_float(const unsigned char *src, float *dst, long n) {
    for (long i = 0; i < n; ++i) dst[i] = src[i] / 255.f;
}
