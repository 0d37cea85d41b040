"""The Bokeh server application directory (`bokeh serve dashboards/app` works as well as `sendense dashboard`)."""
