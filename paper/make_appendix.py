"""Write paper/generated/theory_appendix.tex: the full statements and proofs of docs/THEORY.md's sections that the
paper's figures and tables use (§3 derived bounds, §8 graphs, §9 sharper a-priori bounds, §10 calibrated/relative/
task-level statements, §11 certified norms, §12 tighter certificates, and any later [D] section), converted from the
project's own Markdown by pandoc (``pip install pypandoc-binary``), so that the paper states and proves exactly what
the package implements. The output is committed; building the paper does not need pandoc.

    python paper/make_appendix.py            # rewrite paper/generated/theory_appendix.tex
    python paper/make_appendix.py --check    # exit 1 if the committed file is stale
"""
from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THEORY = ROOT / "docs" / "THEORY.md"
OUT = ROOT / "paper" / "generated" / "theory_appendix.tex"
SECTIONS = (3, 8, 9, 10, 11, 12)  # plus every top-level section numbered above 12

# Unicode in THEORY.md -> LaTeX (pdflatex), one table: Greek, operators, super/subscripts, arrows
MATH = {
    "Γ": r"\Gamma", "Δ": r"\Delta", "Θ": r"\Theta", "Λ": r"\Lambda", "Π": r"\Pi", "Σ": r"\Sigma", "Φ": r"\Phi",
    "Ω": r"\Omega", "α": r"\alpha", "β": r"\beta", "γ": r"\gamma", "δ": r"\delta", "ε": r"\varepsilon", "η": r"\eta",
    "κ": r"\kappa", "λ": r"\lambda", "μ": r"\mu", "ν": r"\nu", "π": r"\pi", "ρ": r"\rho", "σ": r"\sigma", "τ": r"\tau",
    "φ": r"\varphi", "χ": r"\chi", "ω": r"\omega", "θ": r"\theta", "ξ": r"\xi", "ψ": r"\psi", "ζ": r"\zeta",
    "±": r"\pm", "×": r"\times", "·": r"\cdot", "‖": r"\|", "…": r"\dots", "′": r"'", "ℓ": r"\ell", "ℝ": r"\mathbb{R}",
    "←": r"\leftarrow", "↑": r"\uparrow", "→": r"\to", "↦": r"\mapsto", "⇐": r"\Leftarrow", "⇒": r"\Rightarrow",
    "∂": r"\partial", "∅": r"\emptyset", "∇": r"\nabla", "∈": r"\in", "∎": r"\blacksquare", "∏": r"\prod",
    "∑": r"\sum", "∫": r"\int", "−": r"-", "∘": r"\circ", "√": r"\surd", "∝": r"\propto", "∞": r"\infty", "∪": r"\cup",
    "∩": r"\cap", "≈": r"\approx", "≠": r"\neq", "≡": r"\equiv", "≤": r"\le", "≥": r"\ge", "≲": r"\lesssim",
    "≻": r"\succ", "⊆": r"\subseteq", "⊙": r"\odot", "⋯": r"\cdots", "⌈": r"\lceil", "⌉": r"\rceil",
    "⌊": r"\lfloor", "⌋": r"\rfloor", "⟨": r"\langle", "⟩": r"\rangle", "⪯": r"\preceq", "⪰": r"\succeq",
    "𝒢": r"\mathcal{G}", "𝓔": r"\mathcal{E}", "𝟙": r"\mathbf{1}", "ᴴ": r"^{H}", "ᵀ": r"^{T}", "¹": r"^{1}",
    "²": r"^{2}", "³": r"^{3}", "⁰": r"^{0}", "⁴": r"^{4}", "⁵": r"^{5}", "⁶": r"^{6}", "⁷": r"^{7}", "⁸": r"^{8}",
    "⁹": r"^{9}", "⁺": r"^{+}", "⁻": r"^{-}", "₀": r"_{0}", "₁": r"_{1}", "₂": r"_{2}", "½": r"\tfrac12",
    "∀": r"\forall", "∃": r"\exists", "∉": r"\notin", "⊂": r"\subset", "∧": r"\wedge", "∨": r"\vee", "≪": r"\ll",
    "≫": r"\gg", "≳": r"\gtrsim", "ᵏ": r"^{k}", "ⁿ": r"^{n}", "ᵢ": r"_{i}", "ⱼ": r"_{j}", "ₖ": r"_{k}", "⊗": r"\otimes", "⊕": r"\oplus", "∗": r"*", "∼": r"\sim", "≔": r":=", "⋅": r"\cdot",
    "𝒯": r"\mathcal{T}", "₃": r"_{3}", "₄": r"_{4}", "₅": r"_{5}", "₆": r"_{6}", "⟺": r"\iff",
}
TEXT = {"§": r"\S{}", "–": "--", "—": "---", "ł": r"\l{}", "Â": r"\^A", "ê": r"\^e", "ö": r'\"o', "é": r"\'e",
        "è": r"\`e", "ü": r'\"u', "ä": r'\"a', "á": r"\'a", "í": r"\'i", "ó": r"\'o", "ç": r"\c{c}", "ñ": r"\~n",
        "à": r"\`a", "Ĉ": r"\^C", "Ĝ": r"\^G", "Ŝ": r"\^S", "ŝ": r"\^s"}


def select(md: str) -> str:
    parts = re.split(r"(?m)^(?=## )", md)
    keep = []
    for p in parts:
        m = re.match(r"## (\d+)\.", p)
        if m and (int(m.group(1)) in SECTIONS or int(m.group(1)) > max(SECTIONS)):
            keep.append(p)
    return "".join(keep)


def preamble() -> str:
    """\\DeclareUnicodeCharacter lines for every symbol of the table (the paper inputs this before the appendix)."""
    lines = []
    for ch, tex in {**MATH}.items():
        lines.append(f"\\DeclareUnicodeCharacter{{{ord(ch):04X}}}{{\\ensuremath{{{tex}}}}}")
    for ch, tex in TEXT.items():
        if ord(ch) > 255:  # Latin-1 letters are handled by inputenc/T1 already
            lines.append(f"\\DeclareUnicodeCharacter{{{ord(ch):04X}}}{{{tex}}}")
    return "\n".join(lines)


def _escape_underscores(md: str) -> str:
    """THEORY writes subscripts as x_i: escape every underscore outside code so that Markdown never reads emphasis."""
    out = []
    for block in re.split(r"(?ms)(^```.*?^```[^\n]*$)", md):
        if block.startswith("```"):
            out.append(block)
            continue
        out.append("".join(part if part.startswith("`") else part.replace("_", "\\_").replace("*", "\\*")
                                .replace("\\*\\*", "**")
                           for part in re.split(r"(`[^`\n]*`)", block)))
    return "".join(out)


def convert(md: str) -> str:
    import pypandoc

    # combining hat/tilde (F̂, ṽ) and precomposed hatted letters -> \hat{.}, \tilde{.} before pandoc sees them
    md = unicodedata.normalize("NFD", md)
    md = re.sub(r"(.)\u0302", lambda m: f"\ue000{m.group(1)}\ue001", md)   # placeholder for \hat
    md = re.sub(r"(.)\u0303", lambda m: f"\ue002{m.group(1)}\ue003", md)   # placeholder for \tilde
    md = re.sub(r"(.)\u0307", lambda m: f"\ue004{m.group(1)}\ue005", md)   # dot above
    md = re.sub(r"(.)\u0304", lambda m: f"\ue006{m.group(1)}\ue007", md)   # bar above
    md = unicodedata.normalize("NFC", md)
    md = _escape_underscores(md)
    tex = pypandoc.convert_text(md, "latex", format="gfm", extra_args=["--top-level-division=section",
                                                                        "--shift-heading-level-by=0"])
    tex = tex.replace("\ue000", r"\ensuremath{\hat{").replace("\ue001", "}}")
    tex = tex.replace("\ue002", r"\ensuremath{\tilde{").replace("\ue003", "}}")
    tex = tex.replace("\ue004", r"\ensuremath{\dot{").replace("\ue005", "}}")
    tex = tex.replace("\ue006", r"\ensuremath{\bar{").replace("\ue007", "}}")
    # sections of THEORY become appendix subsections; keep THEORY's numbers in the titles
    tex = re.sub(r"\\section\{", r"\\subsection*{", tex)
    tex = re.sub(r"\\subsection\{", r"\\subsubsection*{", tex)
    tex = re.sub(r"\\subsubsection\{", r"\\paragraph{", tex)
    tex = re.sub(r"\\label\{[^}]*\}", "", tex)
    tex = re.sub(r"\\hypertarget\{[^}]*\}\{%\n", "{", tex)
    for ch, t in TEXT.items():
        tex = tex.replace(ch, t + ("" if t.endswith("}") or not t[-1].isalpha() else "{}"))
    return tex


def build() -> str:
    md = select(THEORY.read_text(encoding="utf-8"))
    body = convert(md)
    head = ("% generated by paper/make_appendix.py from docs/THEORY.md (do not edit by hand)\n"
            "% every [D] statement below is checked by python -m proofs_check (symbolic or numeric, see the table)\n")
    return head + body


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = build()
    (OUT.parent / "unicode_map.tex").write_text("% generated by paper/make_appendix.py\n" + preamble() + "\n")
    if "--check" in argv:
        return 0 if OUT.exists() and OUT.read_text(encoding="utf-8") == text else 1
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({len(text):,} characters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
