from echorec import sysinfo

AVX2 = """processor\t: 0
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 fma avx avx2
processor\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 fma avx avx2
"""
AVX512 = "model name\t: Intel(R) Xeon(R) Platinum\nflags\t\t: avx avx2 avx512f avx512_bf16 amx_bf16\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm\n"


def _with(monkeypatch, tmp_path, text):
    p = tmp_path / "cpuinfo"
    p.write_text(text)
    monkeypatch.setattr(sysinfo, "CPUINFO", str(p))


def test_avx2_machine_has_no_fast_bf16(monkeypatch, tmp_path):
    _with(monkeypatch, tmp_path, AVX2)
    assert not sysinfo.cpu_has_fast_bf16()
    assert sysinfo.cpu_vector_isa() == "avx2"
    assert "(AMD EPYC, avx2)" in sysinfo.machine()


def test_avx512_bf16_machine(monkeypatch, tmp_path):
    _with(monkeypatch, tmp_path, AVX512)
    assert sysinfo.cpu_has_fast_bf16()
    assert sysinfo.cpu_vector_isa() == "avx512+bf16"
    assert "Intel(R) Xeon(R) Platinum, avx512+bf16" in sysinfo.machine()


def test_arm_and_missing_cpuinfo(monkeypatch, tmp_path):
    _with(monkeypatch, tmp_path, ARM)
    assert sysinfo.cpu_vector_isa() == "asimd" and not sysinfo.cpu_has_fast_bf16()
    monkeypatch.setattr(sysinfo, "CPUINFO", str(tmp_path / "absent"))
    assert sysinfo.cpu_vector_isa() == "unknown isa" and not sysinfo.cpu_has_fast_bf16()
    assert "cpus (" in sysinfo.machine()
