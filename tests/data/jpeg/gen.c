// One-off generator of small JPEGs covering the sequential decoder's paths.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

static void write(const char *name, int w, int h, int ncomp, int hy, int vy,
                  int restart_mcus, int noninterleaved, int quality, int progressive) {
  struct jpeg_compress_struct c; struct jpeg_error_mgr e;
  FILE *f = fopen(name, "wb");
  c.err = jpeg_std_error(&e); jpeg_create_compress(&c); jpeg_stdio_dest(&c, f);
  c.image_width = w; c.image_height = h; c.input_components = ncomp;
  c.in_color_space = ncomp == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&c); jpeg_set_quality(&c, quality, TRUE);
  c.optimize_coding = TRUE;
  if (ncomp == 3) { c.comp_info[0].h_samp_factor = hy; c.comp_info[0].v_samp_factor = vy;
    for (int i = 1; i < 3; i++) c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1; }
  else { c.comp_info[0].h_samp_factor = hy; c.comp_info[0].v_samp_factor = vy; }
  c.restart_interval = restart_mcus;
  static jpeg_scan_info scans[3];
  if (noninterleaved) {
    for (int i = 0; i < ncomp; i++) { scans[i].comps_in_scan = 1; scans[i].component_index[0] = i;
      scans[i].Ss = 0; scans[i].Se = 63; scans[i].Ah = 0; scans[i].Al = 0; }
    c.scan_info = scans; c.num_scans = ncomp;
  }
  if (progressive) jpeg_simple_progression(&c);
  jpeg_start_compress(&c, TRUE);
  unsigned char *row = malloc(w * ncomp);
  unsigned int s = 12345;
  while (c.next_scanline < c.image_height) {
    int y = c.next_scanline;
    for (int x = 0; x < w; x++) for (int k = 0; k < ncomp; k++) {
      s = s * 1103515245u + 12345u;
      int v = (x * 255 / (w > 1 ? w - 1 : 1)) * (k == 0) + (y * 255 / (h > 1 ? h - 1 : 1)) * (k == 1)
              + ((x + y) * 40 % 256) * (k == 2) + (int)((s >> 16) % 61) - 30;
      if ((x / 5 + y / 4) % 3 == 0) v = 255 - v;  // sharp edges, saturated colours
      row[x * ncomp + k] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
    JSAMPROW r = row; jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c); jpeg_destroy_compress(&c); fclose(f); free(row);
}

int main(void) {
  write("s444.jpg", 23, 17, 3, 1, 1, 0, 0, 90, 0);
  write("s422.jpg", 23, 17, 3, 2, 1, 0, 0, 90, 0);
  write("s440.jpg", 23, 17, 3, 1, 2, 0, 0, 90, 0);
  write("s420_restart.jpg", 37, 29, 3, 2, 2, 2, 0, 85, 0);
  write("s420_scans.jpg", 37, 29, 3, 2, 2, 0, 1, 85, 0);
  write("s420_narrow.jpg", 3, 21, 3, 2, 2, 0, 0, 90, 0);
  write("s422_narrow.jpg", 4, 9, 3, 2, 1, 0, 0, 90, 0);
  write("grey.jpg", 13, 11, 1, 2, 2, 0, 0, 75, 0);
  write("progressive.jpg", 37, 29, 3, 2, 2, 0, 0, 85, 1);
  write("s420_q100.jpg", 19, 15, 3, 2, 2, 0, 0, 100, 0);
  return 0;
}
