using System.Text.Json.Serialization;

namespace Rotor.Cli.Bench;

/// <summary>One benchmark figure, as written by <c>rotor bench --json</c>.</summary>
internal sealed record BenchResult
{
    [JsonPropertyName("name")] public required string Name { get; init; }
    [JsonPropertyName("median_ms")] public required double MedianMs { get; init; }
    [JsonPropertyName("min_ms")] public double? MinMs { get; init; }
    [JsonPropertyName("gflops")] public double? Gflops { get; init; }
    [JsonPropertyName("weight_gbps")] public double? WeightGbps { get; init; }
    [JsonPropertyName("roofline_fraction")] public double? RooflineFraction { get; init; }
    [JsonPropertyName("limit_gbps")] public double? LimitGbps { get; init; }
    [JsonPropertyName("seed_ms")] public double? SeedMs { get; init; }
    [JsonPropertyName("threads")] public int? Threads { get; init; }
    [JsonPropertyName("compute_scaling")] public double? Scaling { get; init; }
    [JsonPropertyName("cache")] public string? Cache { get; init; }
    [JsonPropertyName("reference_us")] public double? ReferenceUs { get; init; }
    [JsonPropertyName("reference")] public string? Reference { get; init; }
    [JsonPropertyName("kernel_path")] public string? KernelPath { get; init; }
    [JsonPropertyName("against_path")] public string? AgainstPath { get; init; }
    [JsonPropertyName("against_median_ms")] public double? AgainstMedianMs { get; init; }
}

[JsonSerializable(typeof(List<BenchResult>))]
[JsonSourceGenerationOptions(WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class BenchJson : JsonSerializerContext;
