"""results/claims.csv and results/claims.md: the paper's claims next to ours (singledir.stats.claims)."""
from singledir.stats.beyond_claims import ALL_CLAIMS
from singledir.stats.claims import Sources, evaluate_claims
from singledir.stats.claims_markdown import to_markdown
from singledir.io import atomic_path, save_csv
from singledir.pipeline.logs import log_to

sm = snakemake
with log_to(sm.log[0]):
    src = Sources.from_paths(list(sm.input.stats) + list(sm.input.tables), stand_ins=sm.params.stand_ins,
                              n_boot=sm.params.bootstrap, seed=sm.params.seed)
    print(f"stats tables: {sorted(src.stats)}; tidy tables: {sorted(src.tables)}; stand-in data: {sorted(src.stand_ins)}")
    table = evaluate_claims(src, ALL_CLAIMS)
    save_csv(table, sm.output.csv)
    with atomic_path(sm.output.md) as tmp:
        tmp.write_text(to_markdown(table, sm.params.scale, sm.params.labels))
    print(table["verdict"].value_counts().to_string())
