"""The dashboard's pure parts: data queries, plotly figure builders and path confinement.

``app.py`` at the project root holds only Streamlit widgets and layout and calls these modules;
nothing in this package calls Streamlit.
"""
