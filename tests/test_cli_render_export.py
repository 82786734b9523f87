"""`mmtalker render` and `mmtalker export` from the command line, on the FLAME template."""

import numpy as np
import pytest

from mmtalker.cli import main
from mmtalker.render.video import video_info


@pytest.fixture()
def animation(tmp_path, fixtures_dir):
    from mmtalker.mesh.io import load_mesh

    template = load_mesh(fixtures_dir / "meshes" / "flame_sample.ply")
    t = 20
    anim = np.repeat(template.vertices[None], t, 0)
    anim[:, :, 1] += 0.004 * np.sin(np.arange(t) / 3)[:, None] * (template.vertices[None, :, 1] < -0.03)
    path = tmp_path / "anim.npy"
    np.save(path, anim.reshape(t, -1))  # the peers' flattened (T, V*3) form
    return path, anim


def test_render_with_audio(tmp_path, fixtures_dir, animation, capsys):
    path, _ = animation
    out = tmp_path / "talk.mp4"
    code = main(["render", str(path), "--template", str(fixtures_dir / "meshes" / "flame_sample.ply"),
                 "--audio", str(fixtures_dir / "audio" / "codetalker_man_stereo_44k.wav"), "--out", str(out),
                 "--fps", "25", "--size", "96"])
    assert code == 0
    info = video_info(out)
    assert info["frames"] == 20 and abs(info["audio_duration"] - 20 / 25) < 1 / 25
    assert info["audio_rate"] == 44100  # the recording's own rate, not the 16 kHz the models hear
    # nothing is overwritten without asking
    assert main(["render", str(path), "--template", str(fixtures_dir / "meshes" / "flame_sample.ply"),
                 "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_render_side_by_side_heatmap(tmp_path, fixtures_dir, animation):
    path, _ = animation
    out = tmp_path / "cmp.mp4"
    code = main(["render", str(path), str(path), "--captions", "truth", "model", "--heatmap",
                 "--template", str(fixtures_dir / "meshes" / "flame_sample.ply"), "--out", str(out), "--size", "64"])
    assert code == 0
    info = video_info(out)
    assert info["size"][0] > 2 * 64 - 2 and info["audio_codec"] is None
    assert info["size"][1] > 64 + 30  # the caption band and the colour bar under the panels


def test_render_heatmap_scale_options(tmp_path, fixtures_dir, animation, capsys):
    path, _ = animation
    template = str(fixtures_dir / "meshes" / "flame_sample.ply")
    out = tmp_path / "cmp.mp4"
    assert main(["render", str(path), str(path), "--heatmap-max", "0.001", "--template", template, "--out", str(out)]) == 1
    assert "only applies with --heatmap" in capsys.readouterr().err
    assert main(["render", str(path), str(path), "--heatmap", "--heatmap-max", "-1", "--template", template,
                 "--out", str(out)]) == 1
    assert "--heatmap-max" in capsys.readouterr().err and not out.exists()
    assert main(["render", str(path), str(path), "--heatmap", "--heatmap-max", "0.001", "--unit", "m", "--template",
                 template, "--out", str(out), "--size", "64"]) == 0


def test_colour_bar_runs_from_dark_blue_to_dark_red():
    from matplotlib import colormaps

    from mmtalker.render.compose import colour_bar

    bar = colour_bar(300, 0.002, "error (m)")
    assert bar.shape[0] % 2 == 0 and bar.shape[1] == 300 and bar.dtype == np.uint8
    row = bar[10]  # through the ramp
    ramp = [x for x in range(300) if int(row[x].max()) - int(row[x].min()) > 30]  # coloured, not the grey label
    lo, hi = (np.asarray(colormaps["turbo"](v)[:3]) * 255 for v in (0.0, 1.0))
    assert np.abs(row[ramp[0]] - lo).max() <= 2 and np.abs(row[ramp[-1]] - hi).max() <= 2


def test_a_long_colour_bar_label_is_wrapped_under_the_bar_not_cut():
    from mmtalker.render.compose import _wrap, colour_bar, label_font
    from PIL import Image, ImageDraw

    label = "root mean squared error per vertex (m)"
    wide, narrow = colour_bar(900, 0.002, label), colour_bar(256, 0.002, label)
    assert wide.shape[0] == 40 and narrow.shape[0] > 40 and narrow.shape[0] % 2 == 0
    below = narrow[40:]  # the label's lines: ink inside the band, not touching its right edge
    ink = np.argwhere(below.min(axis=2) < 128)
    assert len(ink) and ink[:, 1].max() < 256 - 5
    draw, font = ImageDraw.Draw(Image.new("RGB", (1, 1))), label_font(11)
    lines = _wrap(label, 76, font, draw)
    assert " ".join(lines) == label and len(lines) > 1


def test_export_formats(tmp_path, fixtures_dir, animation, capsys):
    from mmtalker.render.export import read_glb_animation

    path, anim = animation
    template = str(fixtures_dir / "meshes" / "flame_uv.obj")
    assert main(["export", str(path), "--template", template, "--format", "glb", "--out", str(tmp_path / "a.glb")]) == 0
    back, times, _ = read_glb_animation(tmp_path / "a.glb")
    assert np.abs(back - anim).max() < 1e-4 and times[1] == pytest.approx(1 / 30)
    assert main(["export", str(path), "--template", template, "--format", "obj", "--out", str(tmp_path / "objs")]) == 0
    assert len(list((tmp_path / "objs").glob("*.obj"))) == 20
    assert main(["export", str(path), "--template", template, "--format", "npz", "--out", str(tmp_path / "a.npz")]) == 0
    # a template of another topology is refused with a clear message
    wrong = tmp_path / "tri.obj"
    wrong.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    assert main(["export", str(path), "--template", str(wrong), "--format", "npz", "--out", str(tmp_path / "b.npz")]) == 1
    assert "vertices but the template has 3" in capsys.readouterr().err


def test_an_npz_with_faces_needs_no_template(tmp_path, fixtures_dir, animation, capsys):
    """An .npz from `animate`/`export` carries its faces: render and export read them when no --template is given;
    a .npy (vertices only) without one, and a file name of another format, are refused with one clear line."""
    from mmtalker.mesh.io import load_mesh
    from mmtalker.render.export import read_glb_animation

    path, anim = animation
    template = str(fixtures_dir / "meshes" / "flame_sample.ply")
    npz = tmp_path / "a.npz"
    assert main(["export", str(path), "--template", template, "--format", "npz", "--out", str(npz)]) == 0
    assert main(["render", str(npz), "--out", str(tmp_path / "a.mp4"), "--size", "64"]) == 0
    assert video_info(tmp_path / "a.mp4")["frames"] == 20
    assert main(["export", str(npz), "--format", "obj", "--out", str(tmp_path / "objs")]) == 0
    first = load_mesh(tmp_path / "objs" / sorted(p.name for p in (tmp_path / "objs").glob("*.obj"))[0])
    assert np.array_equal(first.faces, load_mesh(template).faces)
    assert main(["export", str(npz), "--format", "glb", "--out", str(tmp_path / "a.glb")]) == 0  # the mean frame at rest
    back, _, _ = read_glb_animation(tmp_path / "a.glb")
    assert np.abs(back - anim).max() < 1e-4
    capsys.readouterr()
    assert main(["render", str(path), "--out", str(tmp_path / "b.mp4")]) == 1
    assert "holds no faces" in capsys.readouterr().err and not (tmp_path / "b.mp4").exists()
    assert main(["export", str(npz), "--format", "glb", "--out", str(tmp_path / "x.obj")]) == 1
    assert "should end in .glb" in capsys.readouterr().err and not (tmp_path / "x.obj").exists()


def test_upper_case_names_new_folders_and_files_of_the_wrong_kind(tmp_path, fixtures_dir, animation, capsys):
    """`animate --out X.NPZ` wrote a file render could not read; an --out in a folder not yet made failed after the
    work (npz) while other outputs made the folder; a GLB, a mesh or a wav given as the animation got "holds no
    faces", whose advice (--template) then failed again."""
    path, anim = animation
    template = str(fixtures_dir / "meshes" / "flame_sample.ply")
    upper = tmp_path / "new" / "deeper" / "A.NPZ"
    assert main(["export", str(path), "--template", template, "--format", "npz", "--out", str(upper)]) == 0
    assert main(["render", str(upper), "--out", str(tmp_path / "a.mp4"), "--size", "64"]) == 0
    assert main(["export", str(upper), "--format", "glb", "--out", str(tmp_path / "a.glb")]) == 0
    capsys.readouterr()
    for wrong, words in [(tmp_path / "a.glb", "a glTF export (it cannot be read back"),
                         (fixtures_dir / "meshes" / "flame_uv.obj", "a mesh file (give it as --template)"),
                         (tmp_path / "a.mp4", "a video")]:
        for argv in (["render", str(wrong), "--out", str(tmp_path / "b.mp4")],
                     ["render", str(wrong), "--template", template, "--out", str(tmp_path / "b.mp4")]):
            assert main(argv) == 1
            err = capsys.readouterr().err
            assert f"{wrong}: is not an animation file: {words}" in err and "holds no faces" not in err


def test_sigterm_cleans_up_as_ctrl_c_does(monkeypatch, tmp_path, capsys):
    """`kill` (a scheduler's stop) raised nothing Python could catch: a half-written output stayed under its
    temporary name. It now runs the same clean-up as Ctrl-C and exits 143."""
    import os
    import signal

    import mmtalker.commands.inspect as inspect_command

    partial = tmp_path / ".out.partial.npz"

    def run(args):
        partial.write_bytes(b"half")
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            return 0
        finally:
            partial.unlink()

    monkeypatch.setattr(inspect_command, "run", run)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["inspect", str(tmp_path)]) == 143
    assert "mmtalker inspect: terminated" in capsys.readouterr().err and not partial.exists()
    assert signal.getsignal(signal.SIGTERM) == before  # the caller's handler is back


def test_render_says_what_it_cuts(tmp_path, fixtures_dir, animation, capsys):
    path, anim = animation
    short = tmp_path / "short.npy"
    np.save(short, anim[:12])
    out = tmp_path / "c.mp4"
    assert main(["render", str(path), str(short), "--template", str(fixtures_dir / "meshes" / "flame_sample.ply"),
                 "--audio", str(fixtures_dir / "audio" / "codetalker_man_stereo_44k.wav"), "--out", str(out),
                 "--size", "64"]) == 0
    err = capsys.readouterr().err
    assert "anim.npy 20, short.npy 12 frames" in err and "the first 12" in err
    assert "codetalker_man_stereo_44k.wav lasts 12.69 s, the video 0.40 s: the speech is cut" in err
    assert video_info(out)["frames"] == 12


def test_ffmpeg_quitting_early_is_one_error_naming_the_video(tmp_path, monkeypatch):
    """ffmpeg that cannot open its output quits; the next frame sent meets a broken pipe: one MMTalkerError."""
    import imageio_ffmpeg

    from mmtalker.errors import MMTalkerError
    from mmtalker.render.video import write_video

    def quitting(*args, **kwargs):
        yield
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", quitting)
    frames = [np.zeros((16, 16, 3), np.uint8)] * 3
    with pytest.raises(MMTalkerError, match=r"v.mp4: ffmpeg stopped before the video was written"):
        write_video(tmp_path / "v.mp4", frames, 25.0)
    assert list(tmp_path.iterdir()) == []  # no partial file left
