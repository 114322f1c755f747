/* test_table.c - tables (tools/table.c, tools/npy.c) on generated CSV/NPY/NPZ files, and `cltrain table` / `predict`
 * end to end. usage: test_table CLTRAIN_BINARY WORKDIR */
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zip.h>

#include "testutil.h"
#include "tool.h"

static const char *g_bin;
static char g_dir[3000];

static void path_in(char *out, size_t len, const char *a, const char *b) { snprintf(out, len, "%.3000s/%.1000s", a, b); }

static int write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = fwrite(data, 1, len, f);
    return fclose(f) == 0 && n == len ? 0 : -1;
}

static int write_str(const char *path, const char *s) { return write_bytes(path, s, strlen(s)); }

static char *put(const char *name, const char *text)
{
    static char p[4200];
    path_in(p, sizeof p, g_dir, name);
    write_bytes(p, text, strlen(text));
    return p;
}

static void expect_err(int st, const char *err, const char *what, const char *n1, const char *n2)
{
    int ok = st < 0 && strstr(err, n1) && (!n2 || strstr(err, n2));
    TU_CHECK(ok, "%s: expected an error with '%s'%s%s, got status %d: %s", what, n1, n2 ? " and " : "", n2 ? n2 : "",
             st, err);
    if (ok) fprintf(stderr, "  ok (%s): %s\n", what, err);
}

/* An .npy image: header for descr/shape, then `data` bytes. */
static size_t make_npy(unsigned char *out, const char *descr, const char *shape, const char *order, const void *data,
                       size_t len)
{
    char h[256];
    int hl = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr, order, shape);
    while ((10 + hl + 1) % 64) h[hl++] = ' ';
    h[hl++] = '\n';
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (unsigned char)(hl & 255), out[9] = (unsigned char)(hl >> 8);
    memcpy(out + 10, h, (size_t)hl);
    memcpy(out + 10 + hl, data, len);
    return 10 + (size_t)hl + len;
}

static void test_csv(void)
{
    char err[TOOL_ERR_LEN];
    tool_table t;
    const char *cat[1] = {"colour"};
    /* Quoted fields, CRLF, a BOM, spaces, a categorical column and a text target. */
    int st = tool_read_csv(put("ok.csv", "\xEF\xBB\xBF" "a, colour ,\"b,c\",y\r\n1.5,red,\"2\",yes\r\n\r\n-3e2, blue ,4,no\r\n0,red,5,yes"),
                           1, cat, "y", 0, &t, err);
    TU_CHECK(st == 0, "ok.csv: %s", err);
    if (!st) {
        TU_CHECK(t.rows == 3 && t.cols == 4 && !strcmp(t.names[1], "colour") && !strcmp(t.names[2], "b,c"),
                 "3 rows x 4 columns with quoted names (%d x %d, '%s')", t.rows, t.cols, t.names[2]);
        TU_CHECK(t.v[0] == 1.5 && t.v[4] == -300 && t.v[10] == 5, "numbers parsed");
        TU_CHECK(t.ncat[1] == 2 && !strcmp(t.cats[1][0], "blue") && t.v[1] == 1 && t.v[5] == 0, "categories sorted");
        TU_CHECK(t.ncat[3] == 2 && !strcmp(t.cats[3][1], "yes") && t.v[3] == 1, "a text target is categorical");
        tool_table_free(&t);
    }
    expect_err(tool_read_csv(put("ragged.csv", "a,b,c\n1,2,3\n4,5\n"), 0, NULL, NULL, 0, &t, err), err, "short row",
               "ragged.csv: line 3 has 2 fields but the header has 3 columns", NULL);
    expect_err(tool_read_csv(put("ragged2.csv", "a,b\n1,2\n3,4\n5,6,7\n"), 0, NULL, NULL, 0, &t, err), err, "long row",
               "ragged2.csv: line 4 has 3 fields but the header has 2 columns", NULL);
    expect_err(tool_read_csv(put("empty.csv", ""), 0, NULL, NULL, 0, &t, err), err, "empty file", "empty.csv: empty file",
               NULL);
    expect_err(tool_read_csv(put("header.csv", "a,b,y\n"), 0, NULL, NULL, 0, &t, err), err, "header only",
               "header.csv: a header row but no data rows", NULL);
    expect_err(tool_read_csv(put("text.csv", "a,b,y\n1,2,0\n3,abc,1\n"), 0, NULL, "y", 0, &t, err), err, "text cell",
               "text.csv: line 3, column 'b' (2): 'abc' is not a number", "--categorical");
    expect_err(tool_read_csv(put("nan.csv", "a,b,y\n1,2,0\nnan,4,1\n"), 0, NULL, "y", 0, &t, err), err, "NaN cell",
               "nan.csv: line 3, column 'a' (1): 'nan' is NaN or infinite", NULL);
    expect_err(tool_read_csv(put("inf.csv", "a,b,y\n1,-inf,0\n"), 0, NULL, "y", 0, &t, err), err, "Inf cell",
               "inf.csv: line 2, column 'b' (2): '-inf' is NaN or infinite", NULL);
    expect_err(tool_read_csv(put("hole.csv", "a,b,y\n1,,0\n"), 0, NULL, "y", 0, &t, err), err, "empty cell",
               "hole.csv: line 2, column 'b' (2): '' is empty", NULL);
    expect_err(tool_read_csv(put("dup.csv", "a,a,y\n1,2,0\n"), 0, NULL, "y", 0, &t, err), err, "duplicate name",
               "column name 'a' appears twice", NULL);
    const char *nocol[1] = {"zzz"};
    expect_err(tool_read_csv(put("cat.csv", "a,y\n1,0\n"), 1, nocol, "y", 0, &t, err), err, "unknown categorical",
               "--categorical zzz: no such column", NULL);
    /* 10^6 columns: refused at the header, naming the limit. */
    size_t n = 1000000 * 2 + 16;
    char *wide = malloc(n);
    size_t at = 0;
    for (int i = 0; i < 1000000; i++) wide[at++] = 'c', wide[at++] = i + 1 < 1000000 ? ',' : '\n';
    memcpy(wide + at, "1\n", 3);
    char p[4200];
    path_in(p, sizeof p, g_dir, "wide.csv");
    write_bytes(p, wide, at + 2);
    free(wide);
    expect_err(tool_read_csv(p, 0, NULL, NULL, 0, &t, err), err, "10^6 columns", "wide.csv: line 1 has more than 100000 columns",
               NULL);
}

static void test_npy(void)
{
    char err[TOOL_ERR_LEN], p[4200];
    unsigned char b[4096];
    tool_table t;
    float f[6] = {1, 2, 3, 4, 5, 6};
    path_in(p, sizeof p, g_dir, "ok.npy");
    write_bytes(p, b, make_npy(b, "<f4", "(3, 2)", "False", f, sizeof f));
    int st = tool_read_npy(p, &t, err);
    TU_CHECK(st == 0 && t.rows == 3 && t.cols == 2 && t.v[5] == 6 && t.v[2] == 3, "float32 (3, 2): %s", err);
    tool_table_free(&t);
    int16_t i16[3] = {-5, 7, 300};
    path_in(p, sizeof p, g_dir, "i2.npy");
    write_bytes(p, b, make_npy(b, "<i2", "(3,)", "False", i16, sizeof i16));
    st = tool_read_npy(p, &t, err);
    TU_CHECK(st == 0 && t.rows == 3 && t.cols == 1 && t.v[0] == -5 && t.v[2] == 300, "int16 (3,): %s", err);
    tool_table_free(&t);
    path_in(p, sizeof p, g_dir, "c8.npy");
    write_bytes(p, b, make_npy(b, "<c8", "(3,)", "False", f, 24));
    expect_err(tool_read_npy(p, &t, err), err, "complex dtype", "c8.npy: dtype '<c8' is not supported", NULL);
    path_in(p, sizeof p, g_dir, "be.npy");
    write_bytes(p, b, make_npy(b, ">f4", "(3,)", "False", f, 12));
    expect_err(tool_read_npy(p, &t, err), err, "big-endian", "be.npy: dtype '>f4' is not supported", NULL);
    path_in(p, sizeof p, g_dir, "obj.npy");
    write_bytes(p, b, make_npy(b, "|O", "(3,)", "False", f, 24));
    expect_err(tool_read_npy(p, &t, err), err, "object dtype", "obj.npy: dtype '|O' is not supported", NULL);
    path_in(p, sizeof p, g_dir, "shape.npy");
    write_bytes(p, b, make_npy(b, "<f4", "(4, 2)", "False", f, sizeof f));
    expect_err(tool_read_npy(p, &t, err), err, "shape vs size", "shape.npy: its shape (4, 2) of <f4 needs 32 bytes of data "
               "but the file holds 24", NULL);
    path_in(p, sizeof p, g_dir, "fortran.npy");
    write_bytes(p, b, make_npy(b, "<f4", "(3, 2)", "True", f, sizeof f));
    expect_err(tool_read_npy(p, &t, err), err, "Fortran order", "fortran.npy: a Fortran-order array is not supported", NULL);
    path_in(p, sizeof p, g_dir, "3d.npy");
    write_bytes(p, b, make_npy(b, "<f4", "(1, 3, 2)", "False", f, sizeof f));
    expect_err(tool_read_npy(p, &t, err), err, "3-D", "3d.npy: a 3-dimensional array", NULL);
    float nanv[2] = {1, NAN};
    path_in(p, sizeof p, g_dir, "nan.npy");
    write_bytes(p, b, make_npy(b, "<f4", "(2,)", "False", nanv, sizeof nanv));
    expect_err(tool_read_npy(p, &t, err), err, "NaN value", "nan.npy: row 1, column 0 is NaN", NULL);
    path_in(p, sizeof p, g_dir, "notnpy.npy");
    write_bytes(p, "hello", 5);
    expect_err(tool_read_npy(p, &t, err), err, "not npy", "notnpy.npy: not a NumPy .npy array", NULL);
    /* .npz: deflated members through libzip. */
    double x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y[4] = {0, 1, 0, 1};
    static unsigned char bx[2048], by[2048];
    size_t lx = make_npy(bx, "<f8", "(4, 2)", "False", x, sizeof x), ly = make_npy(by, "<f8", "(4,)", "False", y, sizeof y);
    path_in(p, sizeof p, g_dir, "ok.npz");
    remove(p);
    int ze = 0;
    zip_t *z = zip_open(p, ZIP_CREATE | ZIP_TRUNCATE, &ze);
    TU_CHECK(z != NULL, "zip_open for writing");
    if (z) {
        zip_source_t *sx = zip_source_buffer(z, bx, lx, 0), *sy = zip_source_buffer(z, by, ly, 0);
        zip_int64_t ix = zip_file_add(z, "features.npy", sx, 0), iy = zip_file_add(z, "label.npy", sy, 0);
        zip_set_file_compression(z, (zip_uint64_t)ix, ZIP_CM_DEFLATE, 9);
        zip_set_file_compression(z, (zip_uint64_t)iy, ZIP_CM_DEFLATE, 9);
        TU_CHECK(zip_close(z) == 0, "zip_close");
    }
    tool_table tx, ty;
    st = tool_read_npz(p, "label", &tx, &ty, err);
    TU_CHECK(st == 0 && tx.rows == 4 && tx.cols == 2 && ty.cols == 1 && tx.v[7] == 8 && ty.v[3] == 1, "npz: %s", err);
    tool_table_free(&tx);
    tool_table_free(&ty);
    expect_err(tool_read_npz(p, "nosuch", &tx, &ty, err), err, "npz without the target", "found 2 other arrays", NULL);
    path_in(p, sizeof p, g_dir, "bad.npz");
    write_bytes(p, "PK\x03\x04 broken", 11);
    expect_err(tool_read_npz(p, "y", &tx, &ty, err), err, "corrupt npz", "bad.npz: not a readable .npz (zip) archive", NULL);
}

/* ------------------------------------------------------------------------------------------ the command */

typedef tu_result result;

static result run(const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    result r = tu_run_v(g_bin, g_dir, first, ap);
    va_end(ap);
    return r;
}

static double final_acc(const char *out)
{
    const char *last = NULL;
    for (const char *p = out; (p = strstr(p, "final: ")); p++) last = p;
    double acc = -1;
    if (last && sscanf(last, "final: epochs=%*d test_acc=%lf", &acc) != 1) acc = -1;
    return acc;
}

/* The lowest `key` value (e.g. "val_loss=") over the epoch lines, and the final line's test_loss. */
static void losses(const char *out, const char *key, double *lowest, double *final)
{
    *lowest = INFINITY;
    *final = NAN;
    for (const char *p = out; (p = strstr(p, key)); p++) {
        double v = strtod(p + strlen(key), NULL);
        if (v < *lowest) *lowest = v;
    }
    const char *f = strstr(out, "final: ");
    if (f && (f = strstr(f, "test_loss="))) *final = strtod(f + 10, NULL);
}

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unif(uint64_t *s) { return (rng(s) >> 11) * (1.0 / 9007199254740992.0); }

/* 400 rows: x1, x2 in [-1,1] (scaled differently), a colour; binary label from a linear rule, a regression
 * target 3*x1 - 2*x2 + colour effect. */
static void gen_tables(const char *csv, const char *reg)
{
    FILE *f = fopen(csv, "w"), *g = fopen(reg, "w");
    uint64_t s = 5;
    fprintf(f, "x1,x2,colour,label\n");
    fprintf(g, "x1,x2,colour,value\n");
    for (int i = 0; i < 400; i++) {
        double a = unif(&s) * 2 - 1, b = unif(&s) * 2 - 1;
        int c = (int)(rng(&s) % 3);
        static const char *names[3] = {"red", "green", "blue"};
        int lab = a + b + (c == 2 ? 0.5 : 0) > 0.25;
        fprintf(f, "%.6f,%.6f,%s,%s\n", a * 100, b, names[c], lab ? "pos" : "neg");
        fprintf(g, "%.6f,%.6f,%s,%.6f\n", a * 100, b, names[c], 3 * a - 2 * b + c);
    }
    fclose(f);
    fclose(g);
}

static void test_command(void)
{
    char csv[4200], reg[4200], ck[4200], ck2[4200], pred[4200];
    path_in(csv, sizeof csv, g_dir, "gen.csv");
    path_in(reg, sizeof reg, g_dir, "reg.csv");
    char svg[4200];
    path_in(svg, sizeof svg, g_dir, "curves.svg");
    remove(svg);
    path_in(ck, sizeof ck, g_dir, "bin.ckpt");
    path_in(ck2, sizeof ck2, g_dir, "reg.ckpt");
    remove(ck);
    remove(ck2);
    gen_tables(csv, reg);
    result r = run("table", "--data", csv, "--target", "label", "--categorical", "colour", "--validation-split", "0.25",
                   "--epochs", "60", "--lr", "0.01", "--tune", "off", "--checkpoint", ck, "--early-stop", "3", "--plot", svg,
                   NULL);
    double acc = final_acc(r.out);
    TU_CHECK(r.code == 0 && acc >= 0.9, "binary table: validation accuracy %.4f (>= 0.9 expected)\n%s%s", acc, r.out,
             r.err);
    TU_CHECK(strstr(r.out, "task binary, model seed-binary") && strstr(r.out, "300 training rows, 100 validation rows, "
             "5 inputs (3 columns)") && strstr(r.out, "ROC AUC"), "binary summary lines\n%s", r.out);
    /* --early-stop restores the best epoch: the final loss is the lowest validation loss of the run. */
    double lo, fin;
    losses(r.out, "val_loss=", &lo, &fin);
    TU_CHECK(fabs(lo - fin) < 1e-4, "early stop: final loss %.4f is the best epoch's %.4f", fin, lo);
    TU_CHECK(strstr(r.out, "early stop: restoring the weights of epoch") && !strstr(r.out, "epoch 60/60"),
             "the run stopped early\n%s", r.out);
    free(r.out), free(r.err);
    char *plot = tu_slurp(svg);
    TU_CHECK(strstr(plot, "<svg") && strstr(plot, ">validation<"), "the plot names the validation curve");
    free(plot);
    /* predict: the training file's rows (the target column is ignored), as CSV. */
    path_in(pred, sizeof pred, g_dir, "pred.csv");
    write_str(pred, "x1,colour,x2\n90,red,0.9\n-90,green,-0.9\n");
    r = run("predict", "--checkpoint", ck, "--tune", "off", pred, NULL);
    char want[4400];
    snprintf(want, sizeof want, "file,row,predicted,p(pos)\n%s,1,pos,", pred);
    TU_CHECK(r.code == 0 && !strncmp(r.out, want, strlen(want)) && strstr(r.out, ",2,neg,"),
             "predict on two rows (columns in another order):\n%s%s", r.out, r.err);
    free(r.out), free(r.err);
    write_str(pred, "x1,colour,x2\n90,purple,0.9\n");
    tu_expect_fail(run("predict", "--checkpoint", ck, "--tune", "off", pred, NULL),
                    "row 1, column 'colour': value 'purple' was not among the categories", "unseen category");
    write_str(pred, "x1,colour\n90,red\n");
    tu_expect_fail(run("predict", "--checkpoint", ck, "--tune", "off", pred, NULL), "pred.csv: no column 'x2'",
                    "missing column at predict");
    /* Regression: R^2 of a linear target. */
    r = run("table", "--data", reg, "--target", "value", "--task", "regress", "--categorical", "colour",
            "--validation-split", "0.25", "--epochs", "30", "--tune", "off", "--checkpoint", ck2, NULL);
    double r2 = final_acc(r.out);
    TU_CHECK(r.code == 0 && r2 >= 0.9 && strstr(r.out, "val_mae="), "regression R^2 %.4f (>= 0.9 expected)\n%s%s", r2,
             r.out, r.err);
    free(r.out), free(r.err);
    /* --test FILE: another table with the same columns (here the regression file's first rows as a CSV of its own,
     * evaluated by a regression model of the other file). */
    {
        char te[4200];
        path_in(te, sizeof te, g_dir, "reg_test.csv");
        FILE *in = fopen(reg, "r"), *out = fopen(te, "w");
        char line[256];
        for (int i = 0; in && out && i < 101 && fgets(line, sizeof line, in); i++) fputs(line, out);
        if (in) fclose(in);
        if (out) fclose(out);
        r = run("table", "--data", reg, "--test", te, "--target", "value", "--categorical", "colour", "--epochs", "10",
                "--tune", "off", NULL);
        TU_CHECK(r.code == 0 && strstr(r.out, "400 training rows, 100 test rows") && strstr(r.out, " test_r2=") &&
                 strstr(r.out, "\ntest: mse "), "--test FILE evaluates the other table\n%s%s", r.out, r.err);
        free(r.out), free(r.err);
    }
    tu_expect_fail(run("eval", "--checkpoint", ck, NULL), "is a `cltrain table` checkpoint", "eval of a table");
    tu_expect_fail(run("table", "--data", csv, "--target", "label", "--early-stop", "2", NULL),
                    "--early-stop watches the evaluation loss", "early stop without evaluation rows");
    /* .npy: y = 2 a - b + 1 in the last column; regression, then predict the same file's rows. */
    {
        static float a[300 * 3];
        uint64_t s = 9;
        for (int i = 0; i < 300; i++) {
            a[i * 3] = (float)(unif(&s) * 2 - 1), a[i * 3 + 1] = (float)(unif(&s) * 4 - 2);
            a[i * 3 + 2] = 2 * a[i * 3] - a[i * 3 + 1] + 1;
        }
        static unsigned char b[300 * 12 + 256];
        char npy[4200], ck3[4200];
        path_in(npy, sizeof npy, g_dir, "lin.npy");
        path_in(ck3, sizeof ck3, g_dir, "lin.ckpt");
        remove(ck3);
        write_bytes(npy, b, make_npy(b, "<f4", "(300, 3)", "False", a, sizeof a));
        r = run("table", "--data", npy, "--target", "-1", "--validation-split", "0.2", "--epochs", "40", "--tune", "off",
                "--checkpoint", ck3, NULL);
        double r2n = final_acc(r.out);
        TU_CHECK(r.code == 0 && strstr(r.out, "task regress") && r2n > 0.95, ".npy regression R^2 %.4f\n%s%s", r2n,
                 r.out, r.err);
        free(r.out), free(r.err);
        r = run("predict", "--checkpoint", ck3, "--tune", "off", npy, NULL);
        double worst = 0;
        int rows = 0;
        for (const char *q = strchr(r.out, '\n'); q && q[1]; q = strchr(q + 1, '\n')) {
            int row;
            double v;
            const char *c = strchr(q + 1, ',');
            if (!c || sscanf(c + 1, "%d,%lf", &row, &v) != 2 || row < 1 || row > 300) break;
            double d = fabs(v - a[(row - 1) * 3 + 2]);
            worst = d > worst ? d : worst;
            rows++;
        }
        TU_CHECK(r.code == 0 && !strncmp(r.out, "file,row,2\n", 11) && rows == 300 && worst < 0.5,
                 "predict on the .npy: %d rows, worst error %.3f (targets span -3..5)\n%.300s%s", rows, worst, r.out, r.err);
        free(r.out), free(r.err);
        char bad[4200];
        path_in(bad, sizeof bad, g_dir, "c8.npy");
        tu_expect_fail(run("predict", "--checkpoint", ck3, "--tune", "off", bad, NULL), "c8.npy: dtype '<c8' is not supported",
                        "predict on an unsupported dtype");
        path_in(bad, sizeof bad, g_dir, "ok.npz");
        r = run("table", "--data", bad, "--target", "label", "--epochs", "2", "--tune", "off", NULL);
        TU_CHECK(r.code == 0 && strstr(r.out, "4 training rows, 0 evaluation rows, 2 inputs"), "train on an .npz:\n%s%s",
                 r.out, r.err);
        free(r.out), free(r.err);
    }
    /* Errors of the command. */
    tu_expect_fail(run("table", "--data", csv, "--target", "nosuch", "--tune", "off", NULL),
                    "gen.csv: no column 'nosuch' (--target) in the header (columns: x1, x2, colour, label)",
                    "missing target column");
    tu_expect_fail(run("table", "--data", csv, "--target", "label", "--tune", "off", NULL),
                    "line 2, column 'colour' (3): '", "undeclared text column");
    tu_expect_fail(run("table", "--data", reg, "--target", "value", "--task", "binary", "--categorical", "colour",
                        "--tune", "off", NULL), "a binary task needs exactly 2",
                    "binary with many values");
    tu_expect_fail(run("table", "--data", csv, "--tune", "off", NULL), "--data FILE and --target COLUMN are required",
                    "no target");
    char p[4200];
    path_in(p, sizeof p, g_dir, "header.csv");
    tu_expect_fail(run("table", "--data", p, "--target", "y", "--tune", "off", NULL), "header.csv: a header row but no data rows",
                    "header only");
    path_in(p, sizeof p, g_dir, "shape.npy");
    tu_expect_fail(run("table", "--data", p, "--target", "0", "--tune", "off", NULL), "shape.npy: its shape (4, 2)",
                    "npy shape");
    tu_expect_fail(run("table", "--data", csv, "--target", "label", "--categorical", "colour", "--resume", NULL),
                    "--resume is not supported", "resume");
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_table CLTRAIN_BINARY WORKDIR\n");
        return 2;
    }
    g_bin = argv[1];
    snprintf(g_dir, sizeof g_dir, "%s/table_test", argv[2]);
    mkdir(g_dir, 0755);
    test_csv();
    test_npy();
    test_command();
    return tu_finish("table");
}
