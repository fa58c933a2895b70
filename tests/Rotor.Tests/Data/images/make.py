# Writes the PNG fixtures of tests/Rotor.Tests/Data/images with Pillow (its own encoder over zlib; adaptive filters),
# and beside each the grey image Pillow makes of it (convert("L"): ITU-R 601-2 luma) as a binary PGM.
import random
from PIL import Image
rng = random.Random(7)
def digit(w, h):
    # a soft ring, white on black, with noise: every filter type pays off somewhere
    px = []
    for y in range(h):
        for x in range(w):
            d = abs(((x - w / 2) ** 2 + (y - h / 2) ** 2) ** 0.5 - w / 3)
            px.append(max(0, min(255, int(255 - d * 60) + rng.randint(-20, 20))))
    return px
w, h = 28, 28
g = digit(w, h)
L = Image.new("L", (w, h)); L.putdata(g)
L.save("grey.png"); L.save("grey.pgm")
A = Image.new("LA", (w, h)); A.putdata([(v, rng.randint(0, 255)) for v in g]); A.save("grey-alpha.png"); A.convert("L").save("grey-alpha.pgm")
R = Image.new("RGB", (w, h)); R.putdata([(v, (v * 7 + x) % 256, 255 - v) for x, v in enumerate(g)]); R.save("rgb.png"); R.convert("L").save("rgb.pgm")
Q = Image.new("RGBA", (13, 9)); Q.putdata([(rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)) for _ in range(13 * 9)])
Q.save("rgba-odd.png", pnginfo=None); Q.convert("L").save("rgba-odd.pgm")
# 16 bits a sample: v * 257 scales back to v exactly
S = Image.new("I", (w, h)); S.putdata([v * 257 for v in g]); S.save("grey16.pgm")
# a text chunk before the image data, and the data split in IDAT chunks of 112 bytes (Pillow's floor: 4 bytes a column)
from PIL import PngImagePlugin, ImageFile
ImageFile.MAXBLOCK = 1
info = PngImagePlugin.PngInfo(); info.add_text("Comment", "written by Pillow for Rotor's tests")
L.save("grey-text.png", pnginfo=info); L.save("grey-text.pgm")
