# What the Snakemake report shows (`snakemake --report results/<run>/report.html`): the figures
# from the final table and the power timelines of one cell and its baseline, then the final
# table, the plan with its GPU-hour preview and the audit summary as pages. Captions are in
# workflow/report/. A figure the table cannot give is a card that says why, never a fake plot.
from evalwatt.smk import report as ew_report

localrules:
    figures,
    report_pages,


rule figures:
    input:
        **ew_report.figure_inputs(RUN),
    output:
        **ew_report.figure_outputs(RUN, report),
    log:
        LAYOUT.log("figures", "figures"),
    run:
        ew_report.write_figures(RUN, input, output, log)


rule report_pages:
    input:
        **ew_report.report_page_inputs(LAYOUT),
    output:
        **ew_report.report_page_outputs(LAYOUT, report),
    log:
        LAYOUT.log("report_pages", "report"),
    run:
        ew_report.write_report_pages(CONFIG, input, output, log)
